//! What a plugin reads, behind a trait: [`WasmHost`] is the real host (the
//! component's imports); [`FakeHost`] (native targets only) answers from
//! canned data so that plugin code runs under `cargo test` on the build
//! machine, without a system.
use crate::{ArchiveMember, HostError, ObjectHead, ServiceResponse, StepError, host_err};
use serde_json::Value;

pub use crate::bindings::imsflow::plugin::log::Level;

/// The reads a plugin makes. Write plugin code against `&impl Host`.
pub trait Host {
    /// GET `path` (relative to the service's base, e.g. `v1/sessiontemplate`)
    /// from a service granted to the step.
    fn service_get(&self, service: &str, path: &str) -> Result<ServiceResponse, HostError>;
    /// HEAD of an object in a granted bucket; `None` when it does not exist.
    fn s3_head(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>, HostError>;
    /// Members of the archive being imported.
    fn archive_members(&self) -> Result<Vec<ArchiveMember>, HostError>;
    /// A log message attributed to the step.
    fn log(&self, level: Level, message: &str);

    /// GETs a JSON document; a status other than 200 is an error naming the
    /// service, path and status.
    fn get_json(&self, service: &str, path: &str) -> Result<Value, StepError> {
        let what = format!("GET {service} {path}");
        let resp = self
            .service_get(service, path)
            .map_err(|e| host_err(&what, e))?;
        if resp.status != 200 {
            let body: String = resp.body.chars().take(300).collect();
            return Err(StepError::Failed(format!(
                "{what}: HTTP {} (expected 200): {body}",
                resp.status
            )));
        }
        serde_json::from_str(&resp.body)
            .map_err(|e| StepError::Failed(format!("{what}: the answer is not JSON: {e}")))
    }

    /// GETs a JSON list (of session templates, ConfigMaps...); anything but a
    /// list is an error.
    fn get_json_list(&self, service: &str, path: &str) -> Result<Vec<Value>, StepError> {
        match self.get_json(service, path)? {
            Value::Array(items) => Ok(items),
            other => Err(StepError::Failed(format!(
                "GET {service} {path}: expected a JSON list, got {}",
                match other {
                    Value::Object(_) => "an object",
                    Value::String(_) => "a string",
                    Value::Number(_) => "a number",
                    Value::Bool(_) => "a boolean",
                    _ => "null",
                }
            ))),
        }
    }

    fn info(&self, message: &str) {
        self.log(Level::Info, message)
    }

    fn warn(&self, message: &str) {
        self.log(Level::Warn, message)
    }
}

/// The real host: the component's `imsflow:plugin` imports.
pub struct WasmHost;

impl Host for WasmHost {
    fn service_get(&self, service: &str, path: &str) -> Result<ServiceResponse, HostError> {
        crate::services::get(service, path)
    }
    fn s3_head(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>, HostError> {
        crate::s3::head(bucket, key)
    }
    fn archive_members(&self) -> Result<Vec<ArchiveMember>, HostError> {
        crate::archive::members()
    }
    fn log(&self, level: Level, message: &str) {
        crate::log::log(level, message)
    }
}

#[cfg(not(target_family = "wasm"))]
pub use fake::FakeHost;

#[cfg(not(target_family = "wasm"))]
mod fake {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// An in-memory host for native tests. A service with no canned answer is
    /// refused as the real host refuses an ungranted one (`denied`); a known
    /// service answers 404 for a path it has no answer for.
    ///
    /// ```
    /// use imsflow_pdk::host::{FakeHost, Host};
    /// let host = FakeHost::new()
    ///     .service_json("bos-v1", "v1/sessiontemplate", serde_json::json!([{"name": "a"}]))
    ///     .object("boot-images", "k/rootfs", 10, "\"etag\"");
    /// assert_eq!(host.get_json_list("bos-v1", "v1/sessiontemplate").unwrap().len(), 1);
    /// assert!(host.s3_head("boot-images", "k/rootfs").unwrap().is_some());
    /// assert!(host.service_get("ims", "v3/images").is_err());
    /// ```
    #[derive(Default)]
    pub struct FakeHost {
        services: BTreeMap<String, BTreeMap<String, ServiceResponse>>,
        objects: BTreeMap<(String, String), ObjectHead>,
        members: Vec<ArchiveMember>,
        requests: RefCell<Vec<String>>,
        logs: RefCell<Vec<(Level, String)>>,
    }

    impl FakeHost {
        pub fn new() -> FakeHost {
            FakeHost::default()
        }

        /// A 200 answer with this JSON for `GET service path`.
        pub fn service_json(self, service: &str, path: &str, body: Value) -> FakeHost {
            self.service_response(service, path, 200, &body.to_string())
        }

        /// Any answer for `GET service path`.
        pub fn service_response(
            mut self,
            service: &str,
            path: &str,
            status: u16,
            body: &str,
        ) -> FakeHost {
            self.services
                .entry(service.to_string())
                .or_default()
                .insert(
                    path.to_string(),
                    ServiceResponse {
                        status,
                        body: body.to_string(),
                    },
                );
            self
        }

        /// An object that `s3_head` finds.
        pub fn object(mut self, bucket: &str, key: &str, size: u64, etag: &str) -> FakeHost {
            let head = ObjectHead {
                size,
                etag: etag.to_string(),
                content_type: None,
                metadata: vec![],
                last_modified: None,
                accept_ranges: None,
            };
            self.objects
                .insert((bucket.to_string(), key.to_string()), head);
            self
        }

        /// A member of the input archive.
        pub fn member(mut self, path: &str, size: u64) -> FakeHost {
            self.members.push(ArchiveMember {
                path: path.to_string(),
                size,
            });
            self
        }

        /// The `GET service path` requests made, in order.
        pub fn requests(&self) -> Vec<String> {
            self.requests.borrow().clone()
        }

        /// The messages logged, in order.
        pub fn logs(&self) -> Vec<(Level, String)> {
            self.logs.borrow().clone()
        }
    }

    impl Host for FakeHost {
        fn service_get(&self, service: &str, path: &str) -> Result<ServiceResponse, HostError> {
            self.requests
                .borrow_mut()
                .push(format!("GET {service} {path}"));
            let Some(paths) = self.services.get(service) else {
                return Err(HostError::Denied(format!(
                    "service `{service}` is not granted (FakeHost has no answer for it)"
                )));
            };
            Ok(paths.get(path).cloned().unwrap_or(ServiceResponse {
                status: 404,
                body: r#"{"detail":"not found (FakeHost)"}"#.into(),
            }))
        }
        fn s3_head(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>, HostError> {
            Ok(self
                .objects
                .get(&(bucket.to_string(), key.to_string()))
                .cloned())
        }
        fn archive_members(&self) -> Result<Vec<ArchiveMember>, HostError> {
            Ok(self.members.clone())
        }
        fn log(&self, level: Level, message: &str) {
            self.logs.borrow_mut().push((level, message.to_string()));
        }
    }
}
