//! The participant factory: turns a validated [`ParticipantSpec`] into what transactions
//! use — a connected server participant, or a member of the SQLite group. This is the one
//! place outside the participant files that looks at the kind of database.

use std::sync::Arc;

use super::mysql::MysqlParticipant;
use super::postgres::PostgresParticipant;
use super::sqlite::SqliteMember;
use super::{Location, ParticipantError, ParticipantSpec, ServerParticipant};
use crate::dialect::Dialect;

/// One configured participant, ready for transactions. Cloning is shallow (a server
/// participant's pool is shared).
#[derive(Clone)]
pub enum ParticipantSlot {
    /// A PostgreSQL or MySQL/MariaDB participant with its connection pool: its branches are
    /// prepared in phase 1.
    Server(Arc<dyn ServerParticipant>),
    /// An SQLite file: attached with the transaction's other SQLite files to one connection,
    /// so one COMMIT covers them all.
    Sqlite(SqliteMember),
}

impl ParticipantSlot {
    /// Connects a server participant (a pool of up to `max_connections`); an SQLite
    /// participant is only described here and opened per transaction.
    pub async fn connect(
        spec: &ParticipantSpec,
        max_connections: u32,
    ) -> Result<Self, ParticipantError> {
        Ok(match &spec.location {
            Location::Sqlite {
                path,
                create,
                convert_journal,
            } => ParticipantSlot::Sqlite(SqliteMember {
                name: spec.name.clone(),
                path: path.clone(),
                create: *create,
                convert_journal: *convert_journal,
            }),
            Location::Postgres { url } => {
                let server = PostgresParticipant::connect(&spec.name, url, max_connections).await?;
                ParticipantSlot::Server(if spec.last_agent {
                    Arc::new(server.into_last_agent().await?)
                } else {
                    Arc::new(server)
                })
            }
            Location::Mysql { url } => {
                let server = MysqlParticipant::connect(&spec.name, url, max_connections).await?;
                ParticipantSlot::Server(if spec.last_agent {
                    Arc::new(server.into_last_agent().await?)
                } else {
                    Arc::new(server)
                })
            }
        })
    }

    /// Connects every spec, in order. At most one may be the last agent, and not next to
    /// SQLite participants (their group already commits last).
    pub async fn connect_all(
        specs: &[ParticipantSpec],
        max_connections: u32,
    ) -> Result<Vec<Self>, ParticipantError> {
        check_last_agents(specs)?;
        let mut slots = Vec::with_capacity(specs.len());
        for spec in specs {
            slots.push(Self::connect(spec, max_connections).await?);
        }
        Ok(slots)
    }

    pub fn name(&self) -> &str {
        match self {
            ParticipantSlot::Server(server) => server.name(),
            ParticipantSlot::Sqlite(member) => &member.name,
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            ParticipantSlot::Server(server) => server.dialect(),
            ParticipantSlot::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// The server participant, if this is one.
    pub fn server(&self) -> Option<&Arc<dyn ServerParticipant>> {
        match self {
            ParticipantSlot::Server(server) => Some(server),
            ParticipantSlot::Sqlite(_) => None,
        }
    }
}

/// At most one last agent, and none with SQLite participants.
fn check_last_agents(specs: &[ParticipantSpec]) -> Result<(), ParticipantError> {
    let agents: Vec<&str> = specs
        .iter()
        .filter(|s| s.last_agent)
        .map(|s| s.name.as_str())
        .collect();
    let refuse = |message: String, hint: &str| {
        Err(ParticipantError::new(agents[0], "connect", message)
            .class(super::ErrorClass::Configuration)
            .hint(hint))
    };
    if agents.len() > 1 {
        return refuse(
            format!(
                "participants {} are all marked last_agent; a transaction has one last agent",
                agents.join(", ")
            ),
            "keep last_agent=true on one participant",
        );
    }
    if let Some(lite) = specs.iter().find(|s| s.dialect() == Dialect::Sqlite)
        && !agents.is_empty()
    {
        return refuse(
            format!(
                "a last agent cannot be combined with SQLite participant `{}`: the SQLite group commits last, with the decision inside it",
                lite.name
            ),
            "remove last_agent=true, or the SQLite participants",
        );
    }
    Ok(())
}
