//! PLACEHOLDER until the decision log lands.
use crate::gid::Gid;
use std::path::Path;
use std::time::SystemTime;
#[derive(Debug, thiserror::Error)]
#[error("decision log unavailable")]
pub struct DecisionLogError;
pub struct DecisionLog;
impl DecisionLog {
    pub fn open(_path: &Path) -> Result<Self, DecisionLogError> {
        Err(DecisionLogError)
    }
    pub async fn record_commit(
        &self,
        _gid: &Gid,
        _deadline: SystemTime,
    ) -> Result<(), DecisionLogError> {
        Err(DecisionLogError)
    }
    pub fn is_committed(&self, _gid: &Gid) -> Result<bool, DecisionLogError> {
        Err(DecisionLogError)
    }
    pub async fn record_done(&self, _gid: &Gid) -> Result<(), DecisionLogError> {
        Err(DecisionLogError)
    }
}
