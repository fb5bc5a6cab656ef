//! PLACEHOLDER
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QualifyError(String);
pub fn qualify(sql: &str, schema: &str) -> Result<String, QualifyError> { let _ = schema; Ok(sql.to_owned()) }
