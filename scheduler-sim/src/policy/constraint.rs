//! Label constraints a task places on nodes: `key=value`, `key!=value`, `key in a,b`,
//! `key exists`. The [`super::filter::ConstraintMatch`] filter applies them; the text form is
//! what `minictl run --constraint` and trace loaders parse.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The comparison a constraint makes against one node label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// The label is present and equal.
    Eq(String),
    /// The label is absent or different (as Kubernetes' `NotIn`).
    Ne(String),
    /// The label is present and one of the values.
    In(Vec<String>),
    /// The label is present, with any value.
    Exists,
}

/// A constraint on one node label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    pub key: String,
    pub op: Op,
}

impl Constraint {
    pub fn new(key: impl Into<String>, op: Op) -> Self {
        Self {
            key: key.into(),
            op,
        }
    }

    /// Whether `labels` satisfy this constraint.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match &self.op {
            Op::Eq(want) => v == Some(want),
            Op::Ne(not) => v != Some(not),
            Op::In(set) => v.is_some_and(|v| set.iter().any(|s| s == v)),
            Op::Exists => v.is_some(),
        }
    }
}

/// Why a constraint's text did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid constraint {text:?}: {reason} (forms: k=v, k!=v, k in a,b, k exists)")]
pub struct ParseConstraintError {
    pub text: String,
    pub reason: &'static str,
}

impl FromStr for Constraint {
    type Err = ParseConstraintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseConstraintError {
            text: s.to_string(),
            reason,
        };
        let s_trim = s.trim();
        let key_ok = |k: &str| !k.is_empty() && !k.contains(char::is_whitespace);
        if let Some(k) = s_trim.strip_suffix(" exists") {
            let k = k.trim();
            return if key_ok(k) {
                Ok(Self::new(k, Op::Exists))
            } else {
                Err(err("empty key"))
            };
        }
        if let Some((k, vals)) = s_trim.split_once(" in ") {
            let k = k.trim();
            let set: Vec<String> = vals
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from)
                .collect();
            if !key_ok(k) {
                return Err(err("empty key"));
            }
            if set.is_empty() {
                return Err(err("empty value set"));
            }
            return Ok(Self::new(k, Op::In(set)));
        }
        if let Some((k, v)) = s_trim.split_once("!=") {
            let k = k.trim();
            return if key_ok(k) {
                Ok(Self::new(k, Op::Ne(v.trim().to_string())))
            } else {
                Err(err("empty key"))
            };
        }
        if let Some((k, v)) = s_trim.split_once('=') {
            let k = k.trim();
            return if key_ok(k) {
                Ok(Self::new(k, Op::Eq(v.trim().to_string())))
            } else {
                Err(err("empty key"))
            };
        }
        Err(err("no operator"))
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.op {
            Op::Eq(v) => write!(f, "{}={}", self.key, v),
            Op::Ne(v) => write!(f, "{}!={}", self.key, v),
            Op::In(set) => write!(f, "{} in {}", self.key, set.join(",")),
            Op::Exists => write!(f, "{} exists", self.key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_form_and_round_trips() {
        for (text, c) in [
            ("gpu=T4", Constraint::new("gpu", Op::Eq("T4".into()))),
            ("zone!=b", Constraint::new("zone", Op::Ne("b".into()))),
            (
                "gpu in T4,V100",
                Constraint::new("gpu", Op::In(vec!["T4".into(), "V100".into()])),
            ),
            ("ssd exists", Constraint::new("ssd", Op::Exists)),
        ] {
            let parsed: Constraint = text.parse().unwrap();
            assert_eq!(parsed, c);
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!("=x".parse::<Constraint>().unwrap_err().reason, "empty key");
        assert_eq!(
            "gpu".parse::<Constraint>().unwrap_err().reason,
            "no operator"
        );
        assert_eq!(
            "gpu in ,".parse::<Constraint>().unwrap_err().reason,
            "empty value set"
        );
    }

    #[test]
    fn matching_semantics() {
        let l = labels(&[("gpu", "T4"), ("zone", "a")]);
        let m = |s: &str| s.parse::<Constraint>().unwrap().matches(&l);
        assert!(m("gpu=T4"));
        assert!(!m("gpu=V100"));
        assert!(!m("rack=1"));
        assert!(m("gpu!=V100"));
        assert!(!m("gpu!=T4"));
        assert!(m("rack!=1"), "!= matches an absent label");
        assert!(m("zone in a,b"));
        assert!(!m("zone in b,c"));
        assert!(!m("rack in 1"));
        assert!(m("zone exists"));
        assert!(!m("rack exists"));
    }
}
