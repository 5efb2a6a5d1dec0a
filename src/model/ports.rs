//! The port map: where each privileged port moves.
//!
//! Default: 80 -> 8080, 443 -> 8443, any other port p < 1024 -> p + 8000; `--port FROM:TO`
//! overrides. Ports >= 1024 stay unless an override names them.

use std::collections::BTreeMap;

/// Maps listen ports below 1024 to unprivileged ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortMap {
    overrides: BTreeMap<u16, u16>,
}

/// Why a `--port` value is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Not `FROM:TO`.
    #[error("`{0}` is not `FROM:TO` (e.g. `80:9090`)")]
    Syntax(String),
    /// The target is still privileged.
    #[error("`{0}` maps to a port below 1024, which an unprivileged process cannot bind")]
    Privileged(String),
    /// A port number is not one.
    #[error("`{given}`: port {port} is out of range (ports go from 1 to 65535)")]
    OutOfRange {
        /// The `FROM:TO` given.
        given: String,
        /// The number that is out of range.
        port: String,
    },
}

/// The first port an unprivileged process may bind by default
/// (`net.ipv4.ip_unprivileged_port_start`).
pub const UNPRIVILEGED_START: u16 = 1024;

impl PortMap {
    /// The default map plus `FROM:TO` overrides.
    pub fn new(overrides: &[String]) -> Result<PortMap, PortError> {
        let mut map = BTreeMap::new();
        for o in overrides {
            let (f, t) = o
                .split_once(':')
                .ok_or_else(|| PortError::Syntax(o.clone()))?;
            let port = |text: &str| -> Result<u16, PortError> {
                let text = text.trim();
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(PortError::Syntax(o.clone()));
                }
                text.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| PortError::OutOfRange {
                        given: o.clone(),
                        port: text.to_string(),
                    })
            };
            let (from, to) = (port(f)?, port(t)?);
            if to < UNPRIVILEGED_START {
                return Err(PortError::Privileged(o.clone()));
            }
            map.insert(from, to);
        }
        Ok(PortMap { overrides: map })
    }

    /// Where `port` moves, or `None` when it stays.
    pub fn map(&self, port: u16) -> Option<u16> {
        if let Some(&to) = self.overrides.get(&port) {
            return (to != port).then_some(to);
        }
        match port {
            0 => None,
            80 => Some(8080),
            443 => Some(8443),
            p if p < UNPRIVILEGED_START => Some(p + 8000),
            _ => None,
        }
    }

    /// Moves an `ExposedPorts` key such as `80/tcp` or `53/udp`; `None` when it stays.
    pub fn map_exposed(&self, key: &str) -> Option<String> {
        let (port, proto) = match key.split_once('/') {
            Some((p, proto)) => (p, Some(proto)),
            None => (key, None),
        };
        let to = self.map(port.parse().ok()?)?;
        Some(match proto {
            Some(proto) => format!("{to}/{proto}"),
            None => to.to_string(),
        })
    }
}

/// Whether an environment variable's name says it holds a port: `PORT`, `HTTP_PORT`,
/// `NGINX_LISTEN_PORT`, ...
pub fn is_port_variable(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper == "PORT" || upper.ends_with("_PORT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_checked() {
        let err = |o: &str| PortMap::new(&[o.to_string()]).unwrap_err().to_string();
        assert_eq!(
            err("80:99999"),
            "`80:99999`: port 99999 is out of range (ports go from 1 to 65535)"
        );
        assert_eq!(
            err("0:8080"),
            "`0:8080`: port 0 is out of range (ports go from 1 to 65535)"
        );
        assert_eq!(err("80"), "`80` is not `FROM:TO` (e.g. `80:9090`)");
        assert_eq!(err("80:x"), "`80:x` is not `FROM:TO` (e.g. `80:9090`)");
        assert!(PortMap::new(&["80:9090".into()]).unwrap().map(80) == Some(9090));
    }

    #[test]
    fn default_map() {
        let m = PortMap::default();
        assert_eq!(m.map(80), Some(8080));
        assert_eq!(m.map(443), Some(8443));
        assert_eq!(m.map(22), Some(8022));
        assert_eq!(m.map(1023), Some(9023));
        assert_eq!(m.map(1024), None);
        assert_eq!(m.map(8080), None);
        assert_eq!(m.map_exposed("80/tcp").as_deref(), Some("8080/tcp"));
        assert_eq!(m.map_exposed("53/udp").as_deref(), Some("8053/udp"));
        assert_eq!(m.map_exposed("80").as_deref(), Some("8080"));
        assert_eq!(m.map_exposed("8080/tcp"), None);
    }

    #[test]
    fn overrides() {
        let m = PortMap::new(&["80:9090".into(), "8080:9000".into()]).unwrap();
        assert_eq!(m.map(80), Some(9090));
        assert_eq!(m.map(8080), Some(9000));
        assert_eq!(m.map(443), Some(8443));
        assert!(matches!(
            PortMap::new(&["80".into()]),
            Err(PortError::Syntax(_))
        ));
        assert!(matches!(
            PortMap::new(&["80:81".into()]),
            Err(PortError::Privileged(_))
        ));
        assert!(matches!(
            PortMap::new(&["x:9000".into()]),
            Err(PortError::Syntax(_))
        ));
    }

    #[test]
    fn port_variables() {
        for n in ["PORT", "HTTP_PORT", "nginx_port"] {
            assert!(is_port_variable(n), "{n}");
        }
        for n in ["PORTS", "SUPPORT", "PORTAL"] {
            assert!(!is_port_variable(n), "{n}");
        }
    }
}
