//! Participant specifications: `NAME=URL` from the command line or `name = "url"` from the
//! configuration file, parsed and validated before anything is opened.
//!
//! A PostgreSQL or MySQL/MariaDB participant becomes the transaction's *last agent* with
//! `?last_agent=true` on its URL (or `name = { url = "…", last_agent = true }` in the file):
//! it is committed in one phase, after every other branch is prepared, with the COMMIT
//! decision written inside its own transaction (see `decision_table.rs`). The option is taken
//! off the URL before the driver sees it.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;
use url::Url;

use crate::dialect::Dialect;

/// Longest participant name, in bytes.
pub const MAX_NAME_LEN: usize = 32;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("participant `{0}` must be given as NAME=URL, e.g. a=sqlite://a.db")]
    MissingEquals(String),
    #[error(
        "participant name `{0}` is invalid: use 1 to {MAX_NAME_LEN} characters from A-Z, a-z, 0-9, `_` and `-`, starting with a letter"
    )]
    BadName(String),
    #[error("participant name `{0}` is reserved; choose another")]
    ReservedName(String),
    #[error("participant `{name}`: `{url}` is not a valid URL: {reason}")]
    BadUrl {
        name: String,
        url: String,
        reason: String,
    },
    #[error(
        "participant `{name}`: unknown URL scheme `{scheme}`; use sqlite://PATH, postgres://… or mysql://…"
    )]
    UnknownScheme { name: String, scheme: String },
    #[error("participant `{name}`: {reason}")]
    BadOption { name: String, reason: String },
}

/// Where a participant's data lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite database file.
    Sqlite {
        path: PathBuf,
        /// Create the file if it is missing (`?mode=rwc`); by default a missing file is an error.
        create: bool,
        /// Switch a WAL/MEMORY/OFF journal to DELETE (`?journal_mode=delete`); by default
        /// such a file is refused, since multi-file commits need a rollback journal.
        convert_journal: bool,
    },
    /// A PostgreSQL server; the URL is passed to the driver.
    Postgres { url: String },
    /// A MySQL or MariaDB server; the URL is passed to the driver.
    Mysql { url: String },
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite {
                path,
                create,
                convert_journal,
            } => f
                .debug_struct("Sqlite")
                .field("path", path)
                .field("create", create)
                .field("convert_journal", convert_journal)
                .finish(),
            Location::Postgres { url } => write!(f, "Postgres({})", redact(url)),
            Location::Mysql { url } => write!(f, "Mysql({})", redact(url)),
        }
    }
}

/// A named participant, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantSpec {
    pub name: String,
    pub location: Location,
    /// Committed last, in one phase, with the COMMIT decision inside its own transaction
    /// (PostgreSQL and MySQL/MariaDB only).
    pub last_agent: bool,
}

impl ParticipantSpec {
    /// Parses `NAME=URL`.
    pub fn parse_arg(arg: &str) -> Result<Self, SpecError> {
        let (name, url) = arg
            .split_once('=')
            .ok_or_else(|| SpecError::MissingEquals(arg.to_owned()))?;
        Self::new(name, url)
    }

    /// Validates a name and a URL.
    pub fn new(name: &str, url: &str) -> Result<Self, SpecError> {
        validate_name(name)?;
        let (location, last_agent) = parse_location(name, url)?;
        Ok(ParticipantSpec {
            name: name.to_owned(),
            location,
            last_agent,
        })
    }

    /// Makes the participant the last agent (the configuration file's table form). Only a
    /// server participant can be one: SQLite participants already commit last, together.
    pub fn set_last_agent(&mut self, last_agent: bool) -> Result<(), SpecError> {
        if last_agent && self.dialect() == Dialect::Sqlite {
            return Err(SpecError::BadOption {
                name: self.name.clone(),
                reason: LAST_AGENT_NOT_SQLITE.into(),
            });
        }
        self.last_agent = last_agent;
        Ok(())
    }

    /// Checks what can be checked without connecting: an SQLite file must exist unless
    /// the URL allows creating it. Run before anything is opened.
    pub fn check_local(&self) -> Result<(), SpecError> {
        match &self.location {
            Location::Sqlite {
                path,
                create: false,
                ..
            } if !path.is_file() => Err(SpecError::BadOption {
                name: self.name.clone(),
                reason: if path.exists() {
                    format!("{} is not a file", path.display())
                } else {
                    format!(
                        "SQLite file {} does not exist; check the path, or add ?mode=rwc to the URL to create it",
                        path.display()
                    )
                },
            }),
            _ => Ok(()),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.location {
            Location::Sqlite { .. } => Dialect::Sqlite,
            Location::Postgres { .. } => Dialect::Postgres,
            Location::Mysql { .. } => Dialect::Mysql,
        }
    }
}

fn validate_name(name: &str) -> Result<(), SpecError> {
    let valid = name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(SpecError::BadName(name.to_owned()));
    }
    // SQLite participants are attached under their names; these schemas already exist.
    if name.eq_ignore_ascii_case("main") || name.eq_ignore_ascii_case("temp") {
        return Err(SpecError::ReservedName(name.to_owned()));
    }
    Ok(())
}

const LAST_AGENT_NOT_SQLITE: &str = "last_agent applies to PostgreSQL and MySQL/MariaDB participants; \
     SQLite participants already commit last, as one group";

/// The URL's location and whether it asks for a last agent.
fn parse_location(name: &str, url: &str) -> Result<(Location, bool), SpecError> {
    let bad_url = |reason: String| SpecError::BadUrl {
        name: name.to_owned(),
        url: redact(url),
        reason,
    };
    let scheme = url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .ok_or_else(|| {
            bad_url(
                "expected SCHEME://…, e.g. sqlite://accounts.db or postgres://user@host/db".into(),
            )
        })?;
    match scheme.as_str() {
        "sqlite" => Ok((parse_sqlite(name, &url["sqlite://".len()..])?, false)),
        "postgres" | "postgresql" | "mysql" | "mariadb" => {
            let parsed = Url::parse(url).map_err(|e| bad_url(e.to_string()))?;
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(bad_url("the URL names no host".into()));
            }
            let (url, last_agent) = take_last_agent(name, url)?;
            let location = if scheme.starts_with("postgres") {
                Location::Postgres { url }
            } else {
                // sqlx knows only the mysql scheme; MariaDB speaks the same protocol.
                Location::Mysql {
                    url: format!("mysql{}", &url[scheme.len()..]),
                }
            };
            Ok((location, last_agent))
        }
        _ => Err(SpecError::UnknownScheme {
            name: name.to_owned(),
            scheme,
        }),
    }
}

/// Takes `last_agent=true|false` off a server URL's query: the URL the driver gets, and the
/// flag.
fn take_last_agent(name: &str, url: &str) -> Result<(String, bool), SpecError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), false));
    };
    let mut last_agent = false;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("last_agent", "true") => last_agent = true,
            ("last_agent", "false") => last_agent = false,
            ("last_agent", other) => {
                return Err(SpecError::BadOption {
                    name: name.to_owned(),
                    reason: format!("last_agent must be `true` or `false`, not `{other}`"),
                });
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, last_agent))
}

/// `sqlite://PATH[?mode=rwc][&journal_mode=delete]`; PATH is relative to the working
/// directory unless it starts with `/`.
fn parse_sqlite(name: &str, rest: &str) -> Result<Location, SpecError> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(SpecError::BadUrl {
            name: name.to_owned(),
            url: format!("sqlite://{rest}"),
            reason: "the URL names no file".into(),
        });
    }
    if path == ":memory:" {
        return Err(SpecError::BadOption {
            name: name.to_owned(),
            reason: "an in-memory SQLite database cannot take part in a transaction that must survive a crash; give a file path".into(),
        });
    }
    let mut create = false;
    let mut convert_journal = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("mode", "rwc") => create = true,
            ("mode", "rw") => create = false,
            ("journal_mode", m) if m.eq_ignore_ascii_case("delete") => convert_journal = true,
            ("last_agent", _) => {
                return Err(SpecError::BadOption {
                    name: name.to_owned(),
                    reason: LAST_AGENT_NOT_SQLITE.into(),
                });
            }
            (key, value) => {
                return Err(SpecError::BadOption {
                    name: name.to_owned(),
                    reason: format!(
                        "unknown SQLite option `{key}={value}`; known: mode=rw, mode=rwc (create if missing), journal_mode=delete (convert a WAL file)"
                    ),
                });
            }
        }
    }
    Ok(Location::Sqlite {
        path: PathBuf::from(path),
        create,
        convert_journal,
    })
}

/// The URL with any password replaced by `***`, for messages and logs. Works on text
/// that does not parse as a URL too.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        let a = ParticipantSpec::parse_arg("a=sqlite://dir/a.db").unwrap();
        assert_eq!(
            a.location,
            Location::Sqlite {
                path: "dir/a.db".into(),
                create: false,
                convert_journal: false
            }
        );
        let b = ParticipantSpec::parse_arg("b=sqlite:///tmp/b.db?mode=rwc").unwrap();
        assert_eq!(
            b.location,
            Location::Sqlite {
                path: "/tmp/b.db".into(),
                create: true,
                convert_journal: false
            }
        );
        let p = ParticipantSpec::parse_arg("p=postgres://root@127.0.0.1/test").unwrap();
        assert_eq!(p.dialect(), Dialect::Postgres);
        let m = ParticipantSpec::parse_arg("m=mariadb://root@127.0.0.1/test1").unwrap();
        assert_eq!(
            m.location,
            Location::Mysql {
                url: "mysql://root@127.0.0.1/test1".into()
            }
        );
    }

    #[test]
    fn refuses_bad_specs_with_reasons() {
        assert!(matches!(
            ParticipantSpec::parse_arg("a"),
            Err(SpecError::MissingEquals(_))
        ));
        assert!(matches!(
            ParticipantSpec::parse_arg("1a=sqlite://x"),
            Err(SpecError::BadName(_))
        ));
        assert!(matches!(
            ParticipantSpec::parse_arg("a b=sqlite://x"),
            Err(SpecError::BadName(_))
        ));
        assert!(matches!(
            ParticipantSpec::parse_arg("MAIN=sqlite://x"),
            Err(SpecError::ReservedName(_))
        ));
        assert!(matches!(
            ParticipantSpec::parse_arg("a=redis://x"),
            Err(SpecError::UnknownScheme { .. })
        ));
        assert!(matches!(
            ParticipantSpec::parse_arg("a=a.db"),
            Err(SpecError::BadUrl { .. })
        ));
        assert!(matches!(
            ParticipantSpec::parse_arg("a=sqlite://"),
            Err(SpecError::BadUrl { .. })
        ));
        assert!(matches!(
            ParticipantSpec::parse_arg("a=sqlite://x?mode=ro"),
            Err(SpecError::BadOption { .. })
        ));
        assert!(matches!(
            ParticipantSpec::parse_arg("a=postgres://"),
            Err(SpecError::BadUrl { .. })
        ));
    }

    #[test]
    fn last_agent_is_taken_off_a_server_url() {
        let p = ParticipantSpec::parse_arg(
            "p=postgres://root@127.0.0.1/test?last_agent=true&application_name=x",
        )
        .unwrap();
        assert!(p.last_agent);
        assert_eq!(
            p.location,
            Location::Postgres {
                url: "postgres://root@127.0.0.1/test?application_name=x".into()
            }
        );
        let m = ParticipantSpec::parse_arg("m=mariadb://root@h/test1?last_agent=true").unwrap();
        assert!(m.last_agent);
        assert_eq!(
            m.location,
            Location::Mysql {
                url: "mysql://root@h/test1".into()
            }
        );
        let off = ParticipantSpec::parse_arg("m=mysql://root@h/t?last_agent=false").unwrap();
        assert!(!off.last_agent);
        assert!(
            !ParticipantSpec::parse_arg("m=mysql://root@h/t")
                .unwrap()
                .last_agent
        );
        for bad in [
            "m=mysql://root@h/t?last_agent=yes",
            "s=sqlite://a.db?last_agent=true",
        ] {
            assert!(
                matches!(
                    ParticipantSpec::parse_arg(bad),
                    Err(SpecError::BadOption { .. })
                ),
                "{bad}"
            );
        }
        let mut s = ParticipantSpec::parse_arg("s=sqlite://a.db").unwrap();
        assert!(s.set_last_agent(true).is_err());
        let mut m = ParticipantSpec::parse_arg("m=mysql://root@h/t").unwrap();
        m.set_last_agent(true).unwrap();
        assert!(m.last_agent);
    }

    #[test]
    fn passwords_never_reach_messages() {
        let err = ParticipantSpec::parse_arg("a=postgres://u:secret@/db")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
        assert_eq!(redact("mysql://u:secret@h/db"), "mysql://u:***@h/db");
        assert_eq!(redact("mysql://u:p@ss@h/db?x=@"), "mysql://u:***@h/db?x=@");
        assert_eq!(redact("mysql://u@h/db"), "mysql://u@h/db");
    }
}
