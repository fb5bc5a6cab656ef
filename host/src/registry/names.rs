//! What a plugin name, a version, an alias and a digest may look like, and how a selector
//! (what an invocation asks for) is told apart: an exact version, an alias, or a digest.

use super::RegistryError;

/// The alias the registry keeps pointing at the highest version; it cannot be set by hand.
pub const LATEST: &str = "latest";

/// `^[a-z0-9][a-z0-9._-]{0,63}$`: safe in a URL path segment and a file name.
pub fn check_name(name: &str) -> Result<(), RegistryError> {
    let invalid = |reason: &str| RegistryError::InvalidName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    let Some(first) = name.bytes().next() else {
        return Err(invalid("it is empty"));
    };
    if name.len() > 64 {
        return Err(invalid("it is longer than 64 characters"));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(invalid("it must start with a lowercase letter or a digit"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid(
            "it may contain only lowercase letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(())
}

/// A semantic version (`1.2.3`, `1.3.0-rc.1`), without build metadata: versions that differ
/// only in `+build` have the same precedence, so "the highest" would be ambiguous.
pub fn parse_version(version: &str) -> Result<semver::Version, RegistryError> {
    let invalid = |reason: String| RegistryError::InvalidVersion {
        version: version.to_owned(),
        reason,
    };
    let parsed = semver::Version::parse(version)
        .map_err(|e| invalid(format!("it is not a semantic version such as 1.2.3 ({e})")))?;
    if !parsed.build.is_empty() {
        return Err(invalid(
            "build metadata (+...) is not allowed; use a pre-release (-rc.1) or a new version"
                .to_owned(),
        ));
    }
    Ok(parsed)
}

/// `[a-z][a-z0-9-]{0,31}`: starts with a letter, so it never looks like a version; not
/// `latest`, which the registry maintains.
pub fn check_alias(alias: &str) -> Result<(), RegistryError> {
    let invalid = |reason: &str| RegistryError::InvalidAlias {
        alias: alias.to_owned(),
        reason: reason.to_owned(),
    };
    if alias == LATEST {
        return Err(invalid(
            "`latest` always points at the highest version that is not withdrawn; it cannot be set",
        ));
    }
    if !is_alias_shaped(alias) {
        return Err(invalid(
            "an alias is 1 to 32 lowercase letters, digits and '-', starting with a letter",
        ));
    }
    Ok(())
}

fn is_alias_shaped(alias: &str) -> bool {
    alias.len() <= 32
        && alias.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && alias
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The lowercase hex of a `sha256:<64 hex>` digest, or `None` when `digest` is not one.
pub fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// What an invocation asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Version(semver::Version),
    Alias(String),
    Digest(String),
}

impl Selector {
    /// `None` is `latest`.
    pub fn parse(selector: Option<&str>) -> Result<Selector, RegistryError> {
        let selector = selector.unwrap_or(LATEST);
        if selector.starts_with("sha256:") {
            return match digest_hex(selector) {
                Some(_) => Ok(Selector::Digest(selector.to_owned())),
                None => Err(RegistryError::InvalidVersion {
                    version: selector.to_owned(),
                    reason: "a digest is sha256: followed by 64 lowercase hex digits".to_owned(),
                }),
            };
        }
        if is_alias_shaped(selector) {
            return Ok(Selector::Alias(selector.to_owned()));
        }
        match parse_version(selector) {
            Ok(version) => Ok(Selector::Version(version)),
            Err(_) => Err(RegistryError::InvalidVersion {
                version: selector.to_owned(),
                reason:
                    "it is neither a version (1.2.3), an alias (stable) nor a digest (sha256:<hex>)"
                        .to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        for good in [
            "transfer",
            "a",
            "0day",
            "bank.transfer_v2-x",
            &"a".repeat(64),
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Transfer",
            "-x",
            ".x",
            "a/b",
            "a b",
            "ä",
            &"a".repeat(65),
            "../x",
        ] {
            assert_eq!(check_name(bad).unwrap_err().code(), "invalid-name", "{bad}");
        }
    }

    #[test]
    fn versions_are_semver_without_build_metadata() {
        for good in ["1.2.3", "0.0.1", "1.3.0-rc.1"] {
            assert!(parse_version(good).is_ok(), "{good}");
        }
        for bad in [
            "1",
            "1.2",
            "v1.2.3",
            "01.2.3",
            "1.2.3+build.5",
            "latest",
            "",
        ] {
            assert_eq!(
                parse_version(bad).unwrap_err().code(),
                "invalid-version",
                "{bad}"
            );
        }
    }

    #[test]
    fn aliases_never_look_like_versions_and_latest_is_reserved() {
        for good in ["stable", "canary-2", "x", &"a".repeat(32)] {
            assert!(check_alias(good).is_ok(), "{good}");
        }
        for bad in [
            "latest",
            "1stable",
            "1.2.3",
            "Stable",
            "a_b",
            "",
            &"a".repeat(33),
        ] {
            assert_eq!(
                check_alias(bad).unwrap_err().code(),
                "invalid-alias",
                "{bad}"
            );
        }
    }

    #[test]
    fn selectors_are_told_apart() {
        assert_eq!(
            Selector::parse(None).unwrap(),
            Selector::Alias("latest".into())
        );
        assert_eq!(
            Selector::parse(Some("1.2.3")).unwrap(),
            Selector::Version(semver::Version::new(1, 2, 3))
        );
        assert_eq!(
            Selector::parse(Some("stable")).unwrap(),
            Selector::Alias("stable".into())
        );
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            Selector::parse(Some(&digest)).unwrap(),
            Selector::Digest(digest.clone())
        );
        for bad in ["sha256:AB", "sha256:", "1.2", "../x", "sha256:../../etc"] {
            assert_eq!(
                Selector::parse(Some(bad)).unwrap_err().code(),
                "invalid-version",
                "{bad}"
            );
        }
    }
}
