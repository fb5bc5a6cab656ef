//! The registry's index: every plugin's versions (digest, size, who published it when,
//! whether it is withdrawn) and aliases, and the rules over them. Pure data: reading and
//! writing the file is `mod.rs`'s business.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::names::{LATEST, Selector, parse_version};
use super::{PluginDetail, PluginSummary, RegistryError, VersionInfo};

/// The index file's format; a file of another format is refused rather than misread.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    pub format: u32,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginEntry>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            format: FORMAT,
            plugins: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PluginEntry {
    /// Keyed by the version as published (canonical semver text).
    #[serde(default)]
    pub versions: BTreeMap<String, VersionEntry>,
    /// Aliases set by hand; `latest` is derived, never stored.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionEntry {
    pub digest: String,
    pub size: u64,
    pub published_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_at: Option<String>,
}

/// What publishing `name@version` with a digest would do.
pub enum PublishCheck {
    /// The version is new.
    New,
    /// The same bytes are published under this version already.
    Same(VersionInfo),
}

impl Index {
    /// Whether `name@version` may be published with `digest`.
    pub fn check_publish(
        &self,
        name: &str,
        version: &str,
        digest: &str,
    ) -> Result<PublishCheck, RegistryError> {
        let Some(existing) = self.plugins.get(name).and_then(|p| p.versions.get(version)) else {
            return Ok(PublishCheck::New);
        };
        if existing.digest == digest {
            return Ok(PublishCheck::Same(existing.info(name, version)));
        }
        Err(RegistryError::VersionExists {
            name: name.to_owned(),
            version: version.to_owned(),
            existing_digest: existing.digest.clone(),
        })
    }

    pub fn insert(&mut self, name: &str, version: &str, entry: VersionEntry) {
        let plugin = self.plugins.entry(name.to_owned()).or_default();
        plugin.versions.insert(version.to_owned(), entry);
    }

    pub fn plugin(&self, name: &str) -> Result<&PluginEntry, RegistryError> {
        self.plugins
            .get(name)
            .ok_or_else(|| RegistryError::PluginNotFound {
                name: name.to_owned(),
            })
    }

    fn plugin_mut(&mut self, name: &str) -> Result<&mut PluginEntry, RegistryError> {
        self.plugins
            .get_mut(name)
            .ok_or_else(|| RegistryError::PluginNotFound {
                name: name.to_owned(),
            })
    }

    /// `name@version`'s entry, whether withdrawn or not.
    pub fn entry(&self, name: &str, version: &str) -> Result<&VersionEntry, RegistryError> {
        self.plugin(name)?
            .versions
            .get(version)
            .ok_or_else(|| not_found(name, version))
    }

    /// The version `selector` names and its entry; a withdrawn version is an error.
    pub fn resolve(
        &self,
        name: &str,
        selector: &Selector,
    ) -> Result<(String, &VersionEntry), RegistryError> {
        let plugin = self.plugin(name)?;
        let version = match selector {
            Selector::Version(version) => version.to_string(),
            Selector::Alias(alias) if alias == LATEST => match plugin.latest() {
                Some(latest) => latest.to_owned(),
                // Every version is withdrawn: say which is the highest.
                None => plugin
                    .highest()
                    .ok_or_else(|| not_found(name, LATEST))?
                    .to_owned(),
            },
            Selector::Alias(alias) => plugin
                .aliases
                .get(alias)
                .cloned()
                .ok_or_else(|| not_found(name, alias))?,
            Selector::Digest(digest) => {
                let mut published = plugin.versions.iter().filter(|(_, e)| &e.digest == digest);
                let first = published.next().ok_or_else(|| not_found(name, digest))?;
                let usable = std::iter::once(first)
                    .chain(published)
                    .find(|(_, e)| e.withdrawn_at.is_none());
                usable.unwrap_or(first).0.clone()
            }
        };
        let entry = plugin
            .versions
            .get(&version)
            .ok_or_else(|| not_found(name, &version))?;
        if entry.withdrawn_at.is_some() {
            return Err(RegistryError::Withdrawn {
                name: name.to_owned(),
                version,
            });
        }
        Ok((version, entry))
    }

    /// Points `alias` at `version`, which must exist and not be withdrawn.
    pub fn set_alias(
        &mut self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), RegistryError> {
        let plugin = self.plugin_mut(name)?;
        let entry = plugin
            .versions
            .get(version)
            .ok_or_else(|| not_found(name, version))?;
        if entry.withdrawn_at.is_some() {
            return Err(RegistryError::Withdrawn {
                name: name.to_owned(),
                version: version.to_owned(),
            });
        }
        plugin.aliases.insert(alias.to_owned(), version.to_owned());
        Ok(())
    }

    /// Marks `name@version` withdrawn at `now`; withdrawing it again keeps the first time.
    /// Returns whether anything changed.
    pub fn withdraw(
        &mut self,
        name: &str,
        version: &str,
        now: &str,
    ) -> Result<bool, RegistryError> {
        let entry = self
            .plugin_mut(name)?
            .versions
            .get_mut(version)
            .ok_or_else(|| not_found(name, version))?;
        if entry.withdrawn_at.is_some() {
            return Ok(false);
        }
        entry.withdrawn_at = Some(now.to_owned());
        Ok(true)
    }

    /// Adds what `other` has and this index lacks: versions (as they are there, withdrawn
    /// or not) and aliases whose name is free here and whose version is usable. A version
    /// both have with different bytes keeps this index's and is reported. Returns whether
    /// anything was added, and the conflicts as `name@version`.
    pub fn merge_missing(&mut self, other: &Index) -> (bool, Vec<String>) {
        let (mut added, mut conflicts) = (false, Vec::new());
        for (name, theirs) in &other.plugins {
            for (version, entry) in &theirs.versions {
                match self.plugins.get(name).and_then(|p| p.versions.get(version)) {
                    Some(ours) if ours.digest != entry.digest => {
                        conflicts.push(format!("{name}@{version}"));
                    }
                    Some(_) => {}
                    None => {
                        self.insert(name, version, entry.clone());
                        added = true;
                    }
                }
            }
            for (alias, version) in &theirs.aliases {
                let plugin = self.plugins.entry(name.clone()).or_default();
                let usable = plugin
                    .versions
                    .get(version)
                    .is_some_and(|e| e.withdrawn_at.is_none());
                if usable && !plugin.aliases.contains_key(alias) {
                    plugin.aliases.insert(alias.clone(), version.clone());
                    added = true;
                }
            }
        }
        (added, conflicts)
    }

    /// Every digest a version names, each once.
    pub fn digests(&self) -> std::collections::BTreeSet<&str> {
        self.plugins
            .values()
            .flat_map(|p| p.versions.values())
            .map(|e| e.digest.as_str())
            .collect()
    }

    pub fn summaries(&self) -> Vec<PluginSummary> {
        self.plugins
            .iter()
            .map(|(name, plugin)| PluginSummary {
                name: name.clone(),
                latest: plugin.latest().map(str::to_owned),
                versions: plugin.versions.len(),
                aliases: plugin.all_aliases(),
            })
            .collect()
    }

    pub fn detail(&self, name: &str) -> Result<PluginDetail, RegistryError> {
        let plugin = self.plugin(name)?;
        let mut versions: Vec<_> = plugin.versions.iter().collect();
        versions.sort_by_key(|(version, _)| semver_of(version));
        Ok(PluginDetail {
            name: name.to_owned(),
            versions: versions
                .into_iter()
                .map(|(version, entry)| entry.info(name, version))
                .collect(),
            aliases: plugin.all_aliases(),
        })
    }
}

impl PluginEntry {
    /// The highest version not withdrawn, preferring releases: a pre-release is `latest`
    /// only while no release is published.
    pub fn latest(&self) -> Option<&str> {
        self.versions
            .iter()
            .filter(|(_, entry)| entry.withdrawn_at.is_none())
            .map(|(version, _)| (semver_of(version), version))
            .max_by_key(|(semver, _)| (semver.pre.is_empty(), semver.clone()))
            .map(|(_, version)| version.as_str())
    }

    /// The highest version, withdrawn or not.
    fn highest(&self) -> Option<&str> {
        self.versions
            .keys()
            .max_by_key(|version| semver_of(version))
            .map(String::as_str)
    }

    /// The aliases set by hand and `latest`, when there is one.
    fn all_aliases(&self) -> BTreeMap<String, String> {
        let mut aliases = self.aliases.clone();
        if let Some(latest) = self.latest() {
            aliases.insert(LATEST.to_owned(), latest.to_owned());
        }
        aliases
    }
}

impl VersionEntry {
    pub fn info(&self, name: &str, version: &str) -> VersionInfo {
        VersionInfo {
            name: name.to_owned(),
            version: version.to_owned(),
            digest: self.digest.clone(),
            size: self.size,
            published_at: self.published_at.clone(),
            published_by: self.published_by.clone(),
            withdrawn_at: self.withdrawn_at.clone(),
        }
    }
}

/// Versions in the index were checked when published; one that no longer parses (an edited
/// file) sorts lowest rather than failing every listing.
fn semver_of(version: &str) -> semver::Version {
    parse_version(version).unwrap_or_else(|_| semver::Version::new(0, 0, 0))
}

fn not_found(name: &str, selector: &str) -> RegistryError {
    RegistryError::VersionNotFound {
        name: name.to_owned(),
        selector: selector.to_owned(),
    }
}
