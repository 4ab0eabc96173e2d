//! Seeding: a realistic, deterministic CSM system from a seed number, and
//! the answers tests assert against (`expected.json`).
use crate::ims::artifacts::{self, ROOTFS};
use crate::ims::schema::Kind;
use crate::ims::store::{Record, Store, Table};
use crate::s3::{S3, S3Config};
use crate::{SimConfig, random_uuid};
use base64::Engine;
use serde_json::{Value, json};
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What to create.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedSpec {
    /// Seed of the deterministic generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 4)]
    pub images: usize,
    #[arg(long, default_value_t = 3)]
    pub recipes: usize,
    #[arg(long, default_value_t = 3)]
    pub public_keys: usize,
    /// Soft-deleted records of each kind (images, recipes, public keys).
    #[arg(long, default_value_t = 1)]
    pub deleted: usize,
    /// Finished jobs (alternating success and error).
    #[arg(long, default_value_t = 3)]
    pub jobs: usize,
    /// Jobs still running (they make an export abort unless told otherwise).
    #[arg(long, default_value_t = 1)]
    pub running_jobs: usize,
    /// Size of each image rootfs, bytes. Every second image's rootfs is a
    /// multipart upload of 5 MiB parts, 5 MiB larger than this.
    #[arg(long, default_value_t = 1 << 20)]
    pub rootfs_size: usize,
}

pub const MULTIPART_PART: usize = 5 << 20;
const BOOT: &str = "boot-images";
const IMS: &str = "ims";
/// Buckets other services keep on the same RGW, with what is typically in them.
const UNUSED: [(&str, &[&str]); 2] = [
    (
        "velero",
        &[
            "backups/daily-20240514/velero-backup.json",
            "backups/daily-20240514/daily-20240514.tar.gz",
        ],
    ),
    (
        "thanos",
        &[
            "01HXA3MZ4QK5T9V7W2Y6B8C0DE/meta.json",
            "01HXA3MZ4QK5T9V7W2Y6B8C0DE/chunks/000001",
            "01HXA3MZ4QK5T9V7W2Y6B8C0DE/index",
        ],
    ),
];

/// The seeder's record of what it made; `expected.json`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Expected {
    /// Live ids per kind: `images`, `recipes`, `public_keys`.
    pub ims: BTreeMap<String, BTreeSet<String>>,
    /// Soft-deleted ids per kind.
    pub deleted: BTreeMap<String, BTreeSet<String>>,
    /// Job id -> status.
    pub jobs: BTreeMap<String, String>,
    pub running_jobs: BTreeSet<String>,
    /// Existing S3 URLs each source yields (`bos`, `bss`, `product_catalog`;
    /// `bos-v1`: what BOS v1 shows, the untenanted templates),
    /// de-duplicated, dangling ones removed.
    pub links: BTreeMap<String, BTreeSet<String>>,
    /// URLs sources reference that do not exist.
    pub dangling: BTreeSet<String>,
    /// Every object in every bucket (`boot-images`, `ims` and the unused
    /// ones): URL -> facts.
    pub objects: BTreeMap<String, ObjectFacts>,
    /// Buckets that hold objects no IMS record or link source uses, as a
    /// real system's velero and thanos buckets: an export leaves them out.
    #[serde(default)]
    pub unused_buckets: BTreeSet<String>,
    /// The `admin-client-auth` client secret.
    pub client_secret: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ObjectFacts {
    pub size: u64,
    pub sha256: String,
    pub etag: String,
    /// User metadata as a HEAD answers it.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

struct Seeder<'a> {
    rng: fastrand::Rng,
    s3: &'a S3,
    store: Store,
    expected: Expected,
    /// Bytes of every object put, by URL, for the expected hashes.
    hashes: BTreeMap<String, String>,
    hour: i64,
}

/// Seeds `data` (which must not hold a system yet) and returns what it made.
pub async fn seed(data: &Path, s3cfg: &S3Config, spec: &SeedSpec) -> anyhow::Result<Expected> {
    if data.join("sim.json").exists() {
        anyhow::bail!(
            "{} already holds a simulated system; use an empty directory",
            data.display()
        );
    }
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let config = SimConfig {
        s3: s3cfg.clone(),
        kube_token: format!("kube-{}", random_uuid(&mut rng)),
    };
    let s3 = S3::new(s3cfg);
    for bucket in [BOOT, IMS] {
        s3.create_bucket(bucket).await?;
    }
    let mut s = Seeder {
        rng,
        s3: &s3,
        store: Store::load(&data.join("ims"))?,
        expected: Expected::default(),
        hashes: BTreeMap::new(),
        hour: 0,
    };
    let keys = s.public_keys(spec.public_keys + spec.deleted)?;
    let recipes = s.recipes(spec.recipes + spec.deleted).await?;
    let images = s
        .images(spec.images + spec.deleted, spec.rootfs_size)
        .await?;
    s.jobs(spec, &recipes, &images, &keys)?;
    for (kind, ids, name) in [
        (Kind::PublicKey, &keys, "public_keys"),
        (Kind::Recipe, &recipes, "recipes"),
        (Kind::Image, &images, "images"),
    ] {
        let (deleted, live) = ids.split_at(spec.deleted);
        for id in deleted {
            s.soft_delete(kind, id).await?;
        }
        s.expected
            .ims
            .insert(name.into(), live.iter().cloned().collect());
        s.expected
            .deleted
            .insert(name.into(), deleted.iter().cloned().collect());
    }
    let live_images: Vec<String> = images[spec.deleted..].to_vec();
    let bos = s.bos(&live_images);
    let bss = s.bss(&live_images).await?;
    let secret = format!("secret-{}", random_uuid(&mut s.rng));
    let k8s = s
        .k8s(&live_images, &recipes[spec.deleted..], &secret)
        .await?;
    s.expected.client_secret = secret;
    for (name, value) in [("bos.json", bos), ("bss.json", bss), ("k8s.json", k8s)] {
        std::fs::write(data.join(name), serde_json::to_vec_pretty(&value)?)?;
    }
    s.unused_buckets().await?;
    s.record_objects().await?;
    config.save(data)?;
    let expected = s.expected;
    std::fs::write(
        data.join("expected.json"),
        serde_json::to_vec_pretty(&expected)?,
    )?;
    Ok(expected)
}

impl Seeder<'_> {
    fn id(&mut self) -> String {
        random_uuid(&mut self.rng)
    }

    /// Creation times an hour apart from a fixed date, so output is stable.
    fn created(&mut self) -> String {
        self.hour += 1;
        let base = chrono::NaiveDate::from_ymd_opt(2024, 5, 14)
            .unwrap()
            .and_hms_micro_opt(9, 0, 0, 0)
            .unwrap();
        let t = base
            + chrono::Duration::hours(self.hour)
            + chrono::Duration::microseconds(self.rng.i64(0..999_999));
        t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.rng.fill(&mut b);
        b
    }

    async fn put(
        &mut self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        multipart: bool,
    ) -> anyhow::Result<String> {
        self.hashes.insert(
            format!("s3://{bucket}/{key}"),
            hex::encode(sha2::Sha256::digest(&body)),
        );
        // IMS tooling and the CLI upload with the content's MD5 as metadata.
        let metadata =
            BTreeMap::from([("md5sum".to_string(), hex::encode(md5::Md5::digest(&body)))]);
        Ok(if multipart {
            self.s3
                .put_multipart(bucket, key, &body, MULTIPART_PART, &metadata)
                .await?
        } else {
            self.s3
                .put_with_metadata(bucket, key, body, &metadata)
                .await?
        })
    }

    fn public_keys(&mut self, n: usize) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        for i in 0..n {
            let id = self.id();
            let mut r = Record::new();
            r.insert("id".into(), json!(id));
            r.insert("created".into(), json!(self.created()));
            r.insert("name".into(), json!(format!("admin@ncn-m00{}", i + 1)));
            let key = base64::engine::general_purpose::STANDARD.encode(self.bytes(32));
            r.insert(
                "public_key".into(),
                json!(format!("ssh-ed25519 {key} admin@ncn-m00{}", i + 1)),
            );
            self.store.put(Table::PublicKeys, r)?;
            ids.push(id);
        }
        Ok(ids)
    }

    async fn recipes(&mut self, n: usize) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        for i in 0..n {
            let id = self.id();
            let key = format!("recipes/{id}/recipe.tar.gz");
            let body = self.bytes(4096 + i * 512);
            let etag = self.put(IMS, &key, body, false).await?;
            let mut r = Record::new();
            r.insert("id".into(), json!(id));
            r.insert("created".into(), json!(self.created()));
            r.insert(
                "name".into(),
                json!(format!("cray-shasta-csm-sles15sp5-barebones-{i}")),
            );
            r.insert("recipe_type".into(), json!("kiwi-ng"));
            r.insert("linux_distribution".into(), json!("sles15"));
            r.insert(
                "arch".into(),
                json!(if i % 3 == 2 { "aarch64" } else { "x86_64" }),
            );
            r.insert("require_dkms".into(), json!(i % 2 == 0));
            r.insert(
                "template_dictionary".into(),
                json!([{ "key": "CSM_RELEASE_VERSION", "value": format!("1.6.{i}") }]),
            );
            r.insert(
                "link".into(),
                json!({ "path": format!("s3://{IMS}/{key}"), "etag": etag, "type": "s3" }),
            );
            self.store.put(Table::Recipes, r)?;
            ids.push(id);
        }
        Ok(ids)
    }

    async fn images(&mut self, n: usize, rootfs_size: usize) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        for i in 0..n {
            let id = self.id();
            let multipart = i % 2 == 1;
            let rootfs_len = if multipart {
                rootfs_size + MULTIPART_PART
            } else {
                rootfs_size
            };
            let mut artifacts = Vec::new();
            for (name, len, mime) in [
                ("rootfs", rootfs_len, ROOTFS),
                ("kernel", 64 << 10, "application/vnd.cray.image.kernel"),
                ("initrd", 256 << 10, "application/vnd.cray.image.initrd"),
            ] {
                let key = format!("{id}/{name}");
                let body = self.bytes(len);
                let md5 = hex::encode(md5::Md5::digest(&body));
                let etag = self
                    .put(BOOT, &key, body, multipart && name == "rootfs")
                    .await?;
                artifacts.push(json!({ "link": { "path": format!("s3://{BOOT}/{key}"), "etag": etag, "type": "s3" }, "md5": md5, "type": mime }));
            }
            let manifest = json!({ "version": "1.0", "created": "2024-05-14 12:00:00", "artifacts": artifacts });
            let manifest_key = format!("{id}/manifest.json");
            let etag = self
                .put(
                    BOOT,
                    &manifest_key,
                    serde_json::to_vec_pretty(&manifest)?,
                    false,
                )
                .await?;
            let mut r = Record::new();
            r.insert("id".into(), json!(id));
            r.insert("created".into(), json!(self.created()));
            r.insert(
                "name".into(),
                json!(format!(
                    "compute-csm-1.6-6.1.{}-{}",
                    90 + i,
                    if i % 3 == 2 { "aarch64" } else { "x86_64" }
                )),
            );
            r.insert(
                "arch".into(),
                json!(if i % 3 == 2 { "aarch64" } else { "x86_64" }),
            );
            r.insert(
                "metadata".into(),
                json!({ "cfs_configuration": format!("compute-24.{i}") }),
            );
            r.insert("link".into(), json!({ "path": format!("s3://{BOOT}/{manifest_key}"), "etag": etag, "type": "s3" }));
            self.store.put(Table::Images, r)?;
            ids.push(id);
        }
        Ok(ids)
    }

    fn jobs(
        &mut self,
        spec: &SeedSpec,
        recipes: &[String],
        images: &[String],
        keys: &[String],
    ) -> anyhow::Result<()> {
        let statuses = (0..spec.jobs)
            .map(|i| if i % 2 == 0 { "success" } else { "error" })
            .chain((0..spec.running_jobs).map(|i| {
                if i % 2 == 0 {
                    "building_image"
                } else {
                    "waiting_on_user"
                }
            }));
        for (i, status) in statuses.enumerate() {
            let id = self.id();
            let (job_type, artifact) = if i % 2 == 0 {
                ("create", recipes.get(i % recipes.len().max(1)))
            } else {
                ("customize", images.get(i % images.len().max(1)))
            };
            let mut r = Record::new();
            r.insert("id".into(), json!(id));
            r.insert("created".into(), json!(self.created()));
            r.insert("job_type".into(), json!(job_type));
            r.insert("artifact_id".into(), json!(artifact));
            r.insert("public_key_id".into(), json!(keys.first()));
            r.insert(
                "image_root_archive_name".into(),
                json!(format!("job-image-{i}")),
            );
            r.insert("status".into(), json!(status));
            r.insert(
                "kubernetes_job".into(),
                json!(format!("cray-ims-{id}-create")),
            );
            r.insert("kubernetes_namespace".into(), json!("ims"));
            r.insert("arch".into(), json!("x86_64"));
            self.store.put(Table::Jobs, r)?;
            if !matches!(status, "success" | "error") {
                self.expected.running_jobs.insert(id.clone());
            }
            self.expected.jobs.insert(id, status.into());
        }
        Ok(())
    }

    /// Soft-deletes through IMS's own code, so the `deleted/` layout is IMS's.
    async fn soft_delete(&mut self, kind: Kind, id: &str) -> anyhow::Result<()> {
        let table = match kind {
            Kind::PublicKey => Table::PublicKeys,
            Kind::Recipe => Table::Recipes,
            Kind::Image => Table::Images,
        };
        let mut record = self.store.get(table, id).cloned().expect("seeded record");
        artifacts::soft_delete(self.s3, kind, &mut record)
            .await
            .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
        record.insert("deleted".into(), json!(self.created()));
        self.store.put(table.deleted().unwrap(), record)?;
        self.store.remove(table, id)?;
        Ok(())
    }

    fn link(&mut self, source: &str, url: String, exists: bool) {
        if exists {
            self.expected
                .links
                .entry(source.into())
                .or_default()
                .insert(url);
        } else {
            self.expected.dangling.insert(url);
        }
    }

    fn image_facts(&self, id: &str) -> (String, String) {
        let record = self.store.get(Table::Images, id).unwrap();
        let manifest = record["link"]["path"].as_str().unwrap().to_string();
        let etag = record["link"]["etag"].as_str().unwrap().to_string();
        (manifest, etag)
    }

    fn bos(&mut self, images: &[String]) -> Value {
        let mut templates = Vec::new();
        for (i, id) in images.iter().enumerate() {
            let (manifest, etag) = self.image_facts(id);
            let rootfs = format!("s3://{BOOT}/{id}/rootfs");
            let params = format!(
                "console=ttyS0,115200 ip=dhcp quiet root=sbps-s3:{rootfs}:{etag}:sbps:v1:iqn.2023-06.csm.iscsi:_sbps-hsn._tcp.sim.example.com:300 nmd_data=url={rootfs},etag={etag} bos_update_frequency=4h"
            );
            self.link("bos", manifest.clone(), true);
            self.link("bos", rootfs.clone(), true);
            let tenant = if i == 1 {
                json!("vcluster-blue")
            } else {
                // BOS v1 (`v1/sessiontemplate`) shows the untenanted ones.
                self.link("bos-v1", manifest.clone(), true);
                self.link("bos-v1", rootfs, true);
                Value::Null
            };
            templates.push(json!({
                "name": format!("compute-24.{i}.0"), "tenant": tenant, "description": format!("Compute nodes, image {i}"),
                "enable_cfs": true, "cfs": { "configuration": format!("compute-24.{i}") },
                "boot_sets": { "compute": {
                    "type": "s3", "path": manifest, "etag": etag, "kernel_parameters": params,
                    "node_roles_groups": ["Compute"], "arch": "X86", "rootfs_provider": "sbps",
                    "rootfs_provider_passthrough": "sbps:v1:iqn.2023-06.csm.iscsi:_sbps-hsn._tcp.sim.example.com:300",
                }},
            }));
        }
        // A template left behind after its image was removed: a dangling link.
        let gone = self.id();
        let manifest = format!("s3://{BOOT}/{gone}/manifest.json");
        self.link("bos", manifest.clone(), false);
        templates.push(json!({ "name": "retired-uan", "tenant": null, "enable_cfs": false,
            "boot_sets": { "uan": { "type": "s3", "path": manifest, "node_roles_groups": ["Application"], "kernel_parameters": "quiet" }}}));
        json!({ "tenants": ["vcluster-blue"], "sessiontemplates": templates })
    }

    async fn bss(&mut self, images: &[String]) -> anyhow::Result<Value> {
        // NCN boot artifacts live outside IMS, under k8s/<version>/.
        let ver = "6.1.94";
        for name in ["kernel", "initrd", "rootfs"] {
            let body = self.bytes(32 << 10);
            self.put(BOOT, &format!("k8s/{ver}/{name}"), body, false)
                .await?;
        }
        let ncn = |n: &str| format!("s3://{BOOT}/k8s/{ver}/{n}");
        let mut entries = vec![json!({
            "hosts": ["x3000c0s1b0n0", "x3000c0s3b0n0"], "kernel": ncn("kernel"), "initrd": ncn("initrd"),
            "params": format!("console=tty0 metal.server={} metal.no-wipe=1 ip=mgmt0:dhcp", ncn("rootfs")),
        })];
        for n in ["kernel", "initrd", "rootfs"] {
            self.link("bss", ncn(n), true);
        }
        for (i, id) in images.iter().enumerate() {
            let (_, etag) = self.image_facts(id);
            let url = |n: &str| format!("s3://{BOOT}/{id}/{n}");
            entries.push(json!({
                "hosts": [format!("x1000c0s{i}b0n0")], "kernel": url("kernel"), "initrd": url("initrd"),
                "params": format!("console=ttyS0,115200 root=craycps-s3:{}:{etag}:dvs:api-gw-service-nmn.local:300:nmn0 quiet", url("rootfs")),
                "cloud-init": { "meta-data": {}, "user-data": {} },
            }));
            for n in ["kernel", "initrd", "rootfs"] {
                self.link("bss", url(n), true);
            }
        }
        let gone = format!("s3://{BOOT}/k8s/0.0.1/kernel");
        self.link("bss", gone.clone(), false);
        entries.push(json!({ "hosts": ["x3000c0s99b0n0"], "kernel": gone, "params": "quiet" }));
        Ok(Value::Array(entries))
    }

    async fn k8s(
        &mut self,
        images: &[String],
        recipes: &[String],
        secret: &str,
    ) -> anyhow::Result<Value> {
        let s3_of = |product: &str, n: usize| {
            (0..n)
                .map(|i| format!("{product}/2.{i}/artifact-{i}.tgz"))
                .collect::<Vec<_>>()
        };
        let (csm_keys, cos_keys) = (s3_of("csm", 2), s3_of("cos", 2));
        for key in csm_keys.iter().chain(&cos_keys) {
            let body = self.bytes(16 << 10);
            self.put(BOOT, key, body, false).await?;
            self.link("product_catalog", format!("s3://{BOOT}/{key}"), true);
        }
        let dangling = "cos/9.9/missing.tgz".to_string();
        self.link("product_catalog", format!("s3://{BOOT}/{dangling}"), false);
        let s3_list = |keys: &[String]| {
            keys.iter()
                .map(|k| json!({ "bucket": BOOT, "key": k }))
                .collect::<Vec<_>>()
        };
        let image_map: serde_json::Map<String, Value> = images
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("compute-image-{i}"), json!({ "id": id })))
            .collect();
        let recipe_map: serde_json::Map<String, Value> = recipes
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("barebones-recipe-{i}"), json!({ "id": id })))
            .collect();
        // Main ConfigMap: csm keeps its component_versions inline (pre-split
        // style); cos is split into its own ConfigMap, as catalog >= 2.3 does.
        let csm = json!({ "1.6.0": { "active": true, "images": image_map, "recipes": recipe_map,
            "component_versions": { "docker": [{ "name": "cray-ims-service", "version": "3.24.0" }], "s3": s3_list(&csm_keys) } } });
        let cos_main = json!({ "2.5.0": { "active": true, "images": {}, "recipes": {} } });
        let mut cos_split_s3 = s3_list(&cos_keys);
        cos_split_s3.push(json!({ "bucket": BOOT, "key": dangling }));
        let cos_split = json!({ "2.5.0": { "component_versions": { "s3": cos_split_s3 } } });
        let label = json!({ "type": "cray-product-catalog" });
        let cm = |name: &str, data: Value| json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "namespace": "services", "labels": label }, "data": data });
        Ok(json!({
            "configmaps": [
                cm("cray-product-catalog", json!({ "csm": serde_yaml::to_string(&csm)?, "cos": serde_yaml::to_string(&cos_main)? })),
                cm("cray-product-catalog-cos", json!({ "cos": serde_yaml::to_string(&cos_split)? })),
            ],
            "secrets": [{ "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": { "name": "admin-client-auth", "namespace": "default" },
                "data": { "client-id": base64::engine::general_purpose::STANDARD.encode("admin-client"),
                          "client-secret": base64::engine::general_purpose::STANDARD.encode(secret) } }],
        }))
    }

    async fn unused_buckets(&mut self) -> anyhow::Result<()> {
        for (bucket, keys) in UNUSED {
            self.s3.create_bucket(bucket).await?;
            for key in keys {
                let n = self.rng.usize(1 << 10..8 << 10);
                let body = self.bytes(n);
                self.put(bucket, key, body, false).await?;
            }
            self.expected.unused_buckets.insert(bucket.into());
        }
        Ok(())
    }

    /// Every object now in the buckets, with its hash (moved objects keep the
    /// bytes they were put with; new ones are read back) and metadata.
    async fn record_objects(&mut self) -> anyhow::Result<()> {
        let buckets = [BOOT, IMS].into_iter().chain(UNUSED.map(|(b, _)| b));
        for bucket in buckets {
            for (key, size, etag) in self.s3.list(bucket, "").await? {
                let url = format!("s3://{bucket}/{key}");
                let original = format!(
                    "s3://{bucket}/{}",
                    key.strip_prefix("deleted/").unwrap_or(&key)
                );
                let sha256 = match self.hashes.get(&url).or_else(|| self.hashes.get(&original)) {
                    Some(h) => h.clone(),
                    None => hex::encode(sha2::Sha256::digest(self.s3.get(bucket, &key).await?)),
                };
                let metadata = match self.s3.head(bucket, &key).await? {
                    Some(h) => h.metadata,
                    None => anyhow::bail!("{url} vanished while seeding"),
                };
                self.expected.objects.insert(
                    url,
                    ObjectFacts {
                        size,
                        sha256,
                        etag,
                        metadata,
                    },
                );
            }
        }
        Ok(())
    }
}
