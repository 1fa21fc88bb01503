//! Taints and tolerations, as in Kubernetes: a node's taint keeps every task off it unless the
//! task tolerates that taint. Operators taint the nodes a task must opt into (GPU machines,
//! a node being drained); the task says so with a toleration.
//!
//! Written `key=value:Effect` or `key:Effect`; a toleration is `key=value[:Effect]` (equal
//! value), `key[:Effect]` (any value), or `*` (every taint). Only the `NoSchedule` effect is
//! modelled: placement never evicts, so `NoExecute` would promise what it cannot keep, and
//! `PreferNoSchedule` would be a scorer the presets do not weigh.

use std::fmt;
use std::str::FromStr;

/// What a taint does to a task that does not tolerate it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// The task is not placed on the node.
    NoSchedule,
}

impl Effect {
    fn parse(s: &str) -> Result<Self, TaintParseError> {
        match s {
            "NoSchedule" => Ok(Effect::NoSchedule),
            "PreferNoSchedule" | "NoExecute" => Err(TaintParseError(format!(
                "effect {s} is not supported (only NoSchedule: placement never evicts or weighs taints)"
            ))),
            other => Err(TaintParseError(format!(
                "unknown effect {other:?} (NoSchedule)"
            ))),
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoSchedule")
    }
}

/// A mark on a node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Taint {
    pub key: String,
    /// Empty when the taint has no value.
    pub value: String,
    pub effect: Effect,
}

/// A task's permission to run on nodes with matching taints.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Toleration {
    /// `None` tolerates every key (`*`).
    pub key: Option<String>,
    /// `None` tolerates any value of the key (Kubernetes' `Exists`).
    pub value: Option<String>,
    /// `None` tolerates every effect.
    pub effect: Option<Effect>,
}

impl Toleration {
    /// Whether this toleration covers `t`.
    pub fn tolerates(&self, t: &Taint) -> bool {
        self.key.as_ref().is_none_or(|k| *k == t.key)
            && self.value.as_ref().is_none_or(|v| *v == t.value)
            && self.effect.is_none_or(|e| e == t.effect)
    }
}

/// A taint or toleration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TaintParseError(String);

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
}

impl FromStr for Taint {
    type Err = TaintParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kv, effect) = s.rsplit_once(':').ok_or_else(|| {
            TaintParseError(format!(
                "taint {s:?} has no effect: write key=value:NoSchedule or key:NoSchedule"
            ))
        })?;
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        if !valid_key(key) {
            return Err(TaintParseError(format!(
                "taint {s:?}: key {key:?} must be letters, digits, '.', '-', '_' or '/'"
            )));
        }
        Ok(Taint {
            key: key.to_string(),
            value: value.to_string(),
            effect: Effect::parse(effect)?,
        })
    }
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{}", self.key, self.effect)
        } else {
            write!(f, "{}={}:{}", self.key, self.value, self.effect)
        }
    }
}

impl FromStr for Toleration {
    type Err = TaintParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" {
            return Ok(Toleration {
                key: None,
                value: None,
                effect: None,
            });
        }
        let (kv, effect) = match s.rsplit_once(':') {
            Some((kv, e)) => (kv, Some(Effect::parse(e)?)),
            None => (s, None),
        };
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (kv, None),
        };
        if !valid_key(key) {
            return Err(TaintParseError(format!(
                "toleration {s:?}: key {key:?} must be letters, digits, '.', '-', '_' or '/' (or the whole toleration '*')"
            )));
        }
        Ok(Toleration {
            key: Some(key.to_string()),
            value,
            effect,
        })
    }
}

impl fmt::Display for Toleration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(k) = &self.key else {
            return f.write_str("*");
        };
        f.write_str(k)?;
        if let Some(v) = &self.value {
            write!(f, "={v}")?;
        }
        if let Some(e) = self.effect {
            write!(f, ":{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_parse_and_print_back() {
        let t: Taint = "gpu=t4:NoSchedule".parse().unwrap();
        assert_eq!(
            t,
            Taint {
                key: "gpu".into(),
                value: "t4".into(),
                effect: Effect::NoSchedule
            }
        );
        assert_eq!(t.to_string(), "gpu=t4:NoSchedule");
        assert_eq!(
            "draining:NoSchedule".parse::<Taint>().unwrap().to_string(),
            "draining:NoSchedule"
        );
        assert!("gpu=t4"
            .parse::<Taint>()
            .unwrap_err()
            .to_string()
            .contains("has no effect"));
        assert!("gpu:NoExecute"
            .parse::<Taint>()
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        assert!("a b:NoSchedule".parse::<Taint>().is_err());
    }

    #[test]
    fn tolerations_match_by_key_value_and_effect() {
        let gpu: Taint = "gpu=t4:NoSchedule".parse().unwrap();
        let bare: Taint = "draining:NoSchedule".parse().unwrap();
        let tol = |s: &str| s.parse::<Toleration>().unwrap();
        assert!(tol("gpu=t4:NoSchedule").tolerates(&gpu));
        assert!(tol("gpu=t4").tolerates(&gpu));
        assert!(tol("gpu").tolerates(&gpu), "no value: any value");
        assert!(!tol("gpu=v100").tolerates(&gpu));
        assert!(!tol("gpu").tolerates(&bare));
        assert!(tol("draining").tolerates(&bare));
        assert!(!tol("draining=").tolerates(&gpu));
        assert!(
            tol("draining=").tolerates(&bare),
            "an empty value equals none"
        );
        assert!(tol("*").tolerates(&gpu) && tol("*").tolerates(&bare));
        assert_eq!(tol("gpu=t4:NoSchedule").to_string(), "gpu=t4:NoSchedule");
        assert_eq!(tol("*").to_string(), "*");
        assert!("=x".parse::<Toleration>().is_err());
    }
}
