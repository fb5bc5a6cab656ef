//! PLACEHOLDER
use super::*;
use crate::gid::BranchId;
pub struct MysqlParticipant;
impl MysqlParticipant {
    pub async fn connect(name: &str, _url: &str, _max: u32) -> Result<Self, ParticipantError> {
        Err(ParticipantError::new(
            name,
            "connect",
            "mysql participants are not available yet",
        ))
    }
}
#[async_trait]
impl XaParticipant for MysqlParticipant {
    fn name(&self) -> &str {
        ""
    }
    fn dialect(&self) -> Dialect {
        Dialect::Mysql
    }
    async fn begin(
        &self,
        _b: &BranchId,
        _t: StatementTimeouts,
    ) -> Result<Box<dyn XaBranch>, ParticipantError> {
        unimplemented!()
    }
    async fn prepared_branches(&self, _p: &str) -> Result<Vec<BranchId>, ParticipantError> {
        unimplemented!()
    }
    async fn commit_prepared(&self, _b: &BranchId) -> Result<Resolution, ParticipantError> {
        unimplemented!()
    }
    async fn rollback_prepared(&self, _b: &BranchId) -> Result<Resolution, ParticipantError> {
        unimplemented!()
    }
}
