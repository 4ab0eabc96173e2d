//! Which CSM a run talks to: its gateway, S3 endpoint and Kubernetes API,
//! each with where the setting came from (a flag, the environment, the
//! config file, an NCN's default). Printed before a run changes anything,
//! recorded in the plan, and compared when a saved plan is applied: a plan
//! made against one system is never applied to another. URLs are kept
//! without userinfo; no credential is ever part of a target.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemTarget {
    pub gateway: Setting,
    pub s3_endpoint: Setting,
    /// None when no kubeconfig was found.
    pub kubernetes: Option<KubeTarget>,
}

/// A URL and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    pub url: String,
    pub from: String,
}

/// The kubeconfig's current context, its API server, and which kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeTarget {
    pub server: String,
    pub context: String,
    pub from: String,
}

impl SystemTarget {
    /// One line per part, for the terminal.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!("gateway     {} ({})", self.gateway.url, self.gateway.from),
            format!(
                "S3          {} ({})",
                self.s3_endpoint.url, self.s3_endpoint.from
            ),
        ];
        lines.push(match &self.kubernetes {
            Some(k) => format!(
                "Kubernetes  {}, context `{}` ({})",
                k.server, k.context, k.from
            ),
            None => "Kubernetes  - (no kubeconfig found)".to_string(),
        });
        lines
    }

    /// How `self` (what a plan was made against) differs from `now`, one
    /// entry per part, naming both. The system is its URLs; where a setting
    /// came from, and the context's name, may differ between two hosts that
    /// reach the same system.
    pub fn differences(&self, now: &SystemTarget) -> Vec<String> {
        let mut out = Vec::new();
        let mut compare = |what: &str, planned: &str, now: &str| {
            if !same_url(planned, now) {
                out.push(format!("{what}: planned {planned}, now {now}"));
            }
        };
        compare("gateway", &self.gateway.url, &now.gateway.url);
        compare("S3 endpoint", &self.s3_endpoint.url, &now.s3_endpoint.url);
        if let (Some(planned), Some(now)) = (&self.kubernetes, &now.kubernetes) {
            compare("Kubernetes API server", &planned.server, &now.server);
        }
        out
    }
}

/// Refuses, naming both, to apply a plan to another system than the one it
/// was made against. A plan that changes a CSM always names one: one that
/// does not was edited, or made without connecting.
pub fn check_plan(planned: Option<&SystemTarget>, now: &SystemTarget) -> Result<(), String> {
    let Some(planned) = planned else {
        return Err(
            "it changes a CSM but names none that it was made against; make the plan again".into(),
        );
    };
    let differences = planned.differences(now);
    if differences.is_empty() {
        return Ok(());
    }
    Err(format!(
        "it was made against another system than this run reaches; nothing was done:\n  - {}\n\
         Apply it with the connection settings it was made with (`imsflow show PLAN` names them), \
         or make a new plan against this system.",
        differences.join("\n  - ")
    ))
}

/// Scheme and host are case-insensitive; a trailing `/` says nothing.
fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(gateway: &str, s3: &str, server: &str) -> SystemTarget {
        let setting = |url: &str| Setting {
            url: url.into(),
            from: "--flag".into(),
        };
        SystemTarget {
            gateway: setting(gateway),
            s3_endpoint: setting(s3),
            kubernetes: Some(KubeTarget {
                server: server.into(),
                context: "ctx".into(),
                from: "kubeconfig k".into(),
            }),
        }
    }

    #[test]
    fn only_the_urls_say_which_system() {
        let a = target("https://gw.a", "https://s3.a", "https://k8s.a:6443");
        let mut same = target("https://GW.a/", "https://s3.a", "https://k8s.a:6443");
        same.gateway.from = "$IMSFLOW_GATEWAY".into();
        same.kubernetes.as_mut().unwrap().context = "other-name".into();
        assert!(a.differences(&same).is_empty());
        let b = target("https://gw.b", "https://s3.a", "https://k8s.b:6443");
        assert_eq!(
            a.differences(&b),
            [
                "gateway: planned https://gw.a, now https://gw.b",
                "Kubernetes API server: planned https://k8s.a:6443, now https://k8s.b:6443"
            ]
        );
    }
}
