//! Whether a participant connects as a superuser. The database's privileges are the last
//! line of defence against a hostile script: as a superuser it could read `pg_authid`,
//! other sessions' queries, or files of the server. The CLI warns about such a participant;
//! a long-running server refuses it unless its configuration allows it by name.
//!
//! - PostgreSQL: the session's role has `rolsuper`, or may `SET ROLE` to a role that has;
//! - MySQL/MariaDB: the account (or a role granted to it) holds `SUPER` or
//!   `ALL PRIVILEGES` on `*.*`;
//! - SQLite has no roles: never a superuser.

use std::collections::BTreeSet;

use serde::Serialize;
use sqlx::{MySql, Postgres, Row};

use super::server_branch::ServerPool;
use super::sql_common::describe;
use super::{ErrorClass, ParticipantError, ParticipantSlot};

/// What a participant's role may do beyond its own tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrivilegeReport {
    pub superuser: bool,
    /// Which role or grant makes it one, or what was checked.
    pub detail: String,
}

/// Roles granted through roles are followed this deep (MySQL/MariaDB).
const MAX_ROLES: usize = 32;

impl ParticipantSlot {
    /// Whether this participant connects as a superuser (one query on a pooled connection).
    pub async fn privilege_check(&self) -> Result<PrivilegeReport, ParticipantError> {
        match self {
            ParticipantSlot::Server(server) => server.privilege_check().await,
            ParticipantSlot::Sqlite(_) => Ok(PrivilegeReport {
                superuser: false,
                detail: "SQLite has no roles".to_owned(),
            }),
        }
    }
}

/// One line per superuser participant, saying what to do; nothing for the others. A
/// participant whose privileges cannot be read is skipped (its transactions will say why).
pub async fn superuser_warnings(participants: &[ParticipantSlot]) -> Vec<String> {
    let mut warnings = Vec::new();
    for participant in participants {
        match participant.privilege_check().await {
            Ok(report) if report.superuser => warnings.push(format!(
                "participant `{}` connects as a superuser ({}): a script could read or change anything on that server; connect as a role with only the grants its tables need (README: least privilege)",
                participant.name(),
                report.detail
            )),
            Ok(_) => {}
            Err(e) => tracing::debug!("cannot check the privileges of `{}`: {e}", participant.name()),
        }
    }
    warnings
}

fn check_failed(server_name: &str, e: sqlx::Error) -> ParticipantError {
    ParticipantError::new(server_name, "check privileges", describe(&e))
        .class(ErrorClass::Connection)
}

pub(super) async fn postgres(
    server: &ServerPool<Postgres>,
) -> Result<PrivilegeReport, ParticipantError> {
    let mut conn = server
        .connections
        .acquire()
        .await
        .map_err(|e| check_failed(&server.name, e))?;
    let (role, superuser, reachable): (String, bool, Option<String>) = sqlx::query_as(
        "SELECT r.rolname::text, r.rolsuper, \
                (SELECT string_agg(s.rolname::text, ', ' ORDER BY s.rolname) FROM pg_roles s \
                  WHERE s.rolsuper AND s.rolname <> r.rolname AND pg_has_role(r.oid, s.oid, 'MEMBER')) \
           FROM pg_roles r WHERE r.rolname = session_user",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| check_failed(&server.name, e))?;
    Ok(if superuser {
        PrivilegeReport {
            superuser: true,
            detail: format!("role `{role}` has rolsuper"),
        }
    } else if let Some(superusers) = reachable {
        PrivilegeReport {
            superuser: true,
            detail: format!(
                "role `{role}` is a member of the superuser role {superusers} and may SET ROLE to it"
            ),
        }
    } else {
        PrivilegeReport {
            superuser: false,
            detail: format!("role `{role}` is not a superuser"),
        }
    })
}

pub(super) async fn mysql(server: &ServerPool<MySql>) -> Result<PrivilegeReport, ParticipantError> {
    let mut conn = server
        .connections
        .acquire()
        .await
        .map_err(|e| check_failed(&server.name, e))?;
    let account: String = sqlx::query_scalar("SELECT CURRENT_USER()")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| check_failed(&server.name, e))?;
    // The account's own grants, then those of every role granted to it, transitively.
    let mut pending = vec![None::<String>];
    let mut seen = BTreeSet::new();
    let mut unreadable = Vec::new();
    while let Some(role) = pending.pop() {
        let sql = match &role {
            None => "SHOW GRANTS FOR CURRENT_USER()".to_owned(),
            Some(role) => format!("SHOW GRANTS FOR {role}"),
        };
        // The text protocol: not every server prepares SHOW statements.
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await;
        let lines: Vec<String> = match rows {
            Ok(rows) => rows
                .iter()
                .filter_map(|row| row.try_get_unchecked::<String, _>(0).ok())
                .collect(),
            Err(e) if role.is_some() => {
                unreadable.push(format!("{} ({})", role.unwrap_or_default(), describe(&e)));
                continue;
            }
            Err(e) => return Err(check_failed(&server.name, e)),
        };
        for line in &lines {
            match parse_grant(line) {
                Some(Grant::Global(privileges)) => {
                    if let Some(found) = privileges.iter().find(|p| is_superuser_privilege(p)) {
                        let via = role
                            .as_ref()
                            .map(|r| format!(" through role {r}"))
                            .unwrap_or_default();
                        return Ok(PrivilegeReport {
                            superuser: true,
                            detail: format!("account {account} holds {found} ON *.*{via}"),
                        });
                    }
                }
                Some(Grant::Roles(roles)) => {
                    for granted in roles {
                        if seen.len() < MAX_ROLES && seen.insert(granted.clone()) {
                            pending.push(Some(granted));
                        }
                    }
                }
                None => {}
            }
        }
    }
    let mut detail = format!("account {account} holds neither SUPER nor ALL PRIVILEGES ON *.*");
    if !unreadable.is_empty() {
        detail.push_str(&format!(
            "; the grants of {} could not be read",
            unreadable.join(", ")
        ));
    }
    Ok(PrivilegeReport {
        superuser: false,
        detail,
    })
}

/// One line of `SHOW GRANTS` that matters here.
#[derive(Debug, PartialEq, Eq)]
enum Grant {
    /// `GRANT <privileges> ON *.* TO …`: the privileges, upper case.
    Global(Vec<String>),
    /// `GRANT <role>, … TO …`: the roles, as printed (quoted), for `SHOW GRANTS FOR`.
    Roles(Vec<String>),
}

fn parse_grant(line: &str) -> Option<Grant> {
    let rest = line.strip_prefix("GRANT ")?;
    if let Some((privileges, _)) = rest.split_once(" ON *.* TO ") {
        return Some(Grant::Global(
            privileges
                .split(',')
                .map(|p| p.trim().to_ascii_uppercase())
                .collect(),
        ));
    }
    if rest.contains(" ON ") {
        return None; // a database, table, routine or proxy grant
    }
    let (roles, _) = rest.split_once(" TO ")?;
    Some(Grant::Roles(split_roles(roles)))
}

/// Splits `` `a`, `b`@`%` `` at the commas outside backquotes.
fn split_roles(roles: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut current, mut quoted) = (String::new(), false);
    for c in roles.chars() {
        match c {
            '`' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut current).trim().to_owned()),
            _ => current.push(c),
        }
    }
    out.push(current.trim().to_owned());
    out.retain(|r| !r.is_empty());
    out
}

fn is_superuser_privilege(privilege: &str) -> bool {
    matches!(privilege, "SUPER" | "ALL" | "ALL PRIVILEGES")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_grants_lines_are_read() {
        let root = "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION";
        assert_eq!(
            parse_grant(root),
            Some(Grant::Global(vec!["ALL PRIVILEGES".into()]))
        );
        let app = "GRANT USAGE ON *.* TO `wasmtx_app`@`%` IDENTIFIED BY PASSWORD '*61CA'";
        assert_eq!(parse_grant(app), Some(Grant::Global(vec!["USAGE".into()])));
        let db = "GRANT SELECT, INSERT, UPDATE, DELETE ON `test1`.* TO `wasmtx_app`@`%`";
        assert_eq!(parse_grant(db), None);
        let roles = "GRANT `ops`, `a,b`@`%` TO `wasmtx_app`@`%`";
        assert_eq!(
            parse_grant(roles),
            Some(Grant::Roles(vec!["`ops`".into(), "`a,b`@`%`".into()]))
        );
        let super_ = "GRANT SELECT, SUPER ON *.* TO `x`@`%`";
        let Some(Grant::Global(privileges)) = parse_grant(super_) else {
            panic!()
        };
        assert!(privileges.iter().any(|p| is_superuser_privilege(p)));
        assert!(!is_superuser_privilege("SUPER READ ONLY"));
    }
}
