//! Global transaction ids: `wtx.<node>.<ulid>`, and the branch ids derived from them.
//!
//! The ULID's timestamp is the transaction's **deadline** (its random part keeps ids
//! unique), so recovery can tell from a prepared branch alone whether its deadline has
//! passed, whatever timeout the transaction ran with: a COMMIT decision is only recorded
//! before the deadline, so past it (plus a margin) an undecided branch can be rolled back.
//! Neither PostgreSQL nor MySQL accepts a transaction id as a bound parameter, so ids are formatted into statements; every id is
//! validated against a narrow alphabet first.

use std::fmt;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use ulid::Ulid;

/// The prefix every wasmtx gid starts with.
pub const GID_PREFIX: &str = "wtx";
/// Longest node id, in bytes.
pub const MAX_NODE_ID_LEN: usize = 16;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GidError {
    #[error(
        "node id `{0}` is invalid: use 1 to {MAX_NODE_ID_LEN} characters from A-Z, a-z, 0-9 and `-`"
    )]
    BadNodeId(String),
    #[error("`{0}` is not a wasmtx transaction id (expected wtx.<node>.<ulid>)")]
    NotAGid(String),
}

/// A validated node id: names the host (or group of hosts sharing one decision log) that
/// coordinates a transaction, so recovery touches only its own branches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId(String);

impl NodeId {
    pub fn new(id: &str) -> Result<Self, GidError> {
        let valid = !id.is_empty()
            && id.len() <= MAX_NODE_ID_LEN
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if valid {
            Ok(NodeId(id.to_owned()))
        } else {
            Err(GidError::BadNodeId(id.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix shared by every gid of this node, e.g. `wtx.node-1.`.
    pub fn gid_prefix(&self) -> String {
        format!("{GID_PREFIX}.{}.", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A global transaction id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gid {
    text: String,
    ulid: Ulid,
}

impl Gid {
    /// A fresh gid for a transaction of `node` that must be decided by `deadline`.
    pub fn new(node: &NodeId, deadline: SystemTime) -> Self {
        let ulid = Ulid::from_datetime(deadline);
        Gid {
            text: format!("{GID_PREFIX}.{node}.{ulid}"),
            ulid,
        }
    }

    /// Parses a gid read back from a database or a log.
    pub fn parse(text: &str) -> Result<Self, GidError> {
        let not_a_gid = || GidError::NotAGid(text.to_owned());
        let mut parts = text.splitn(3, '.');
        let (Some(GID_PREFIX), Some(node), Some(ulid)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(not_a_gid());
        };
        NodeId::new(node).map_err(|_| not_a_gid())?;
        let parsed = Ulid::from_string(ulid).map_err(|_| not_a_gid())?;
        if parsed.to_string() != ulid {
            return Err(not_a_gid());
        }
        Ok(Gid {
            text: text.to_owned(),
            ulid: parsed,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The node that coordinates it (the gid's middle part).
    pub fn node(&self) -> NodeId {
        let node = self.text.split('.').nth(1).unwrap_or_default();
        NodeId(node.to_owned())
    }

    /// When the transaction must be decided by (to the millisecond).
    pub fn deadline(&self) -> SystemTime {
        self.ulid.datetime()
    }

    /// The deadline in RFC 3339, to the millisecond (UTC), as answers show it.
    pub fn deadline_rfc3339(&self) -> String {
        chrono::DateTime::<chrono::Utc>::from(self.deadline())
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// Whether the deadline plus `margin` has passed at `now`.
    pub fn expired(&self, margin: Duration, now: SystemTime) -> bool {
        self.deadline() + margin <= now
    }

    /// The id of this transaction's branch on participant number `index`.
    pub fn branch(&self, index: u32) -> BranchId {
        BranchId {
            gid: self.clone(),
            index,
        }
    }
}

impl fmt::Display for Gid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One participant's branch of a global transaction: the gid plus the participant's index
/// in the transaction. PostgreSQL names it `<gid>.<index>`; MySQL uses gtrid `<gid>` and
/// bqual `<index>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BranchId {
    pub gid: Gid,
    pub index: u32,
}

impl BranchId {
    /// The single-string form, `<gid>.<index>` (PostgreSQL's prepared transaction name).
    pub fn joined(&self) -> String {
        format!("{}.{}", self.gid, self.index)
    }

    /// Parses the single-string form.
    pub fn parse_joined(text: &str) -> Result<Self, GidError> {
        let not_a_gid = || GidError::NotAGid(text.to_owned());
        let (gid, index) = text.rsplit_once('.').ok_or_else(not_a_gid)?;
        let index: u32 = index.parse().map_err(|_| not_a_gid())?;
        if index.to_string() != text.rsplit_once('.').map(|(_, i)| i).unwrap_or_default() {
            return Err(not_a_gid());
        }
        Ok(BranchId {
            gid: Gid::parse(gid)?,
            index,
        })
    }
}

impl fmt::Display for BranchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.gid, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gids_parse_back_and_carry_their_deadline() {
        let node = NodeId::new("node-1").unwrap();
        let deadline = SystemTime::now() + Duration::from_secs(30);
        let gid = Gid::new(&node, deadline);
        assert!(gid.as_str().starts_with("wtx.node-1."));
        assert_eq!(Gid::parse(gid.as_str()).unwrap(), gid);
        let error = deadline.duration_since(gid.deadline()).unwrap();
        assert!(error < Duration::from_millis(1), "kept to the millisecond");
        assert!(!gid.expired(Duration::ZERO, SystemTime::now()));
        assert!(!gid.expired(Duration::from_secs(5), deadline));
        assert!(gid.expired(Duration::from_secs(5), deadline + Duration::from_secs(5)));
        assert_ne!(
            Gid::new(&node, deadline),
            gid,
            "same deadline, still unique"
        );
    }

    #[test]
    fn branch_ids_round_trip() {
        let gid = Gid::new(&NodeId::new("n").unwrap(), SystemTime::now());
        let branch = gid.branch(3);
        assert_eq!(BranchId::parse_joined(&branch.joined()).unwrap(), branch);
        assert!(BranchId::parse_joined(&format!("{gid}.03")).is_err());
        assert!(BranchId::parse_joined(&format!("{gid}")).is_err());
    }

    #[test]
    fn bad_node_ids_and_gids_are_refused() {
        for bad in ["", "has space", "a.b", "x'--", "seventeen-chars-x"] {
            assert!(NodeId::new(bad).is_err(), "{bad}");
        }
        for bad in [
            "wtx.n",
            "wtx.n.notaulid",
            "abc.n.01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "wtx.a b.01ARZ3NDEKTSV4RRFFQ69G5FAV",
        ] {
            assert!(Gid::parse(bad).is_err(), "{bad}");
        }
    }
}
