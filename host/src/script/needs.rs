//! What one instance of a component takes from the sandbox's instance pool — core
//! instances, linear memories, tables — and the largest memory it starts with, counted
//! from the component's binary when a script is loaded.
//!
//! The count follows how wasmtime instantiates a component: every core module
//! instantiation (`core instance (instantiate …)`) takes a core instance and the memories
//! and tables that module defines (imported ones are shared, not allocated), and a nested
//! component adds its own count each time it is instantiated. Bare `core instance` bundles
//! of exports take nothing. wasmtime may add core instances of its own — the adapter
//! modules it generates where one nested component calls another — which the binary does
//! not show; [`counted_by_wasmtime`] reads their total from wasmtime's refusal, so the
//! sandbox can grow the pool for them too.

use serde::Serialize;
use wasmparser::{
    ComponentAlias, ComponentExternalKind, ComponentInstance, ComponentOuterAliasKind,
    ComponentTypeRef, Instance, Parser, Payload,
};

/// Pool resources one instance of a component uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InstanceNeeds {
    pub core_instances: u32,
    pub memories: u32,
    pub tables: u32,
    /// The largest initial size of one of its linear memories, in bytes.
    pub initial_memory_bytes: u64,
}

impl InstanceNeeds {
    /// `self` plus another instance's needs (memories side by side: the largest stays).
    fn add(&mut self, other: &InstanceNeeds) {
        self.core_instances = self.core_instances.saturating_add(other.core_instances);
        self.memories = self.memories.saturating_add(other.memories);
        self.tables = self.tables.saturating_add(other.tables);
        self.initial_memory_bytes = self.initial_memory_bytes.max(other.initial_memory_bytes);
    }

    /// The larger of each count.
    pub fn max(self, other: InstanceNeeds) -> InstanceNeeds {
        InstanceNeeds {
            core_instances: self.core_instances.max(other.core_instances),
            memories: self.memories.max(other.memories),
            tables: self.tables.max(other.tables),
            initial_memory_bytes: self.initial_memory_bytes.max(other.initial_memory_bytes),
        }
    }

    /// Whether every count is within `budget`'s (the initial memory is checked apart).
    pub fn fits(&self, budget: &InstanceNeeds) -> bool {
        self.core_instances <= budget.core_instances
            && self.memories <= budget.memories
            && self.tables <= budget.tables
    }
}

/// The memories and tables one core module defines.
#[derive(Debug, Clone, Copy, Default)]
struct ModuleNeeds {
    memories: u32,
    tables: u32,
    initial_memory_bytes: u64,
}

/// One component being read: its module and component index spaces (`None` for an item
/// whose definition is not in the binary, e.g. imported) and what it instantiates.
#[derive(Default)]
struct ComponentFrame {
    modules: Vec<Option<ModuleNeeds>>,
    components: Vec<Option<InstanceNeeds>>,
    needs: InstanceNeeds,
}

enum Frame {
    Component(ComponentFrame),
    Module(ModuleNeeds),
}

/// Counts what one instance of the component in `bytes` needs. The bytes must be a
/// component (checked by the caller); a malformed one is an error with wasmparser's
/// message.
pub fn count(bytes: &[u8]) -> Result<InstanceNeeds, String> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut result = None;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| e.to_string())?;
        match payload {
            Payload::Version { encoding, .. } => stack.push(match encoding {
                wasmparser::Encoding::Module => Frame::Module(ModuleNeeds::default()),
                wasmparser::Encoding::Component => Frame::Component(ComponentFrame::default()),
            }),
            Payload::MemorySection(reader) => {
                let Some(Frame::Module(module)) = stack.last_mut() else {
                    continue;
                };
                for memory in reader {
                    let memory = memory.map_err(|e| e.to_string())?;
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    module.memories += 1;
                    module.initial_memory_bytes = module
                        .initial_memory_bytes
                        .max(memory.initial.saturating_mul(page));
                }
            }
            Payload::TableSection(reader) => {
                if let Some(Frame::Module(module)) = stack.last_mut() {
                    module.tables += reader.count();
                }
            }
            Payload::InstanceSection(reader) => {
                let frame = current(&mut stack)?;
                for instance in reader {
                    if let Instance::Instantiate { module_index, .. } =
                        instance.map_err(|e| e.to_string())?
                    {
                        let module = frame.modules.get(module_index as usize).copied().flatten();
                        let module = module.unwrap_or_default();
                        frame.needs.add(&InstanceNeeds {
                            core_instances: 1,
                            memories: module.memories,
                            tables: module.tables,
                            initial_memory_bytes: module.initial_memory_bytes,
                        });
                    }
                }
            }
            Payload::ComponentInstanceSection(reader) => {
                let frame = current(&mut stack)?;
                for instance in reader {
                    if let ComponentInstance::Instantiate {
                        component_index, ..
                    } = instance.map_err(|e| e.to_string())?
                    {
                        let nested = frame.components.get(component_index as usize);
                        if let Some(Some(nested)) = nested.copied() {
                            frame.needs.add(&nested);
                        }
                    }
                }
            }
            Payload::ComponentAliasSection(reader) => {
                for alias in reader {
                    let alias = alias.map_err(|e| e.to_string())?;
                    alias_into(&mut stack, &alias)?;
                }
            }
            Payload::ComponentImportSection(reader) => {
                let frame = current(&mut stack)?;
                for import in reader {
                    match import.map_err(|e| e.to_string())?.ty {
                        ComponentTypeRef::Module(_) => frame.modules.push(None),
                        ComponentTypeRef::Component(_) => frame.components.push(None),
                        _ => {}
                    }
                }
            }
            Payload::ComponentExportSection(reader) => {
                // An export is a new index for the item it exports.
                let frame = current(&mut stack)?;
                for export in reader {
                    let export = export.map_err(|e| e.to_string())?;
                    let index = export.index as usize;
                    match export.kind {
                        ComponentExternalKind::Module => {
                            let module = frame.modules.get(index).copied().flatten();
                            frame.modules.push(module);
                        }
                        ComponentExternalKind::Component => {
                            let nested = frame.components.get(index).copied().flatten();
                            frame.components.push(nested);
                        }
                        _ => {}
                    }
                }
            }
            Payload::End(_) => match stack.pop() {
                Some(Frame::Module(module)) => {
                    if let Some(Frame::Component(parent)) = stack.last_mut() {
                        parent.modules.push(Some(module));
                    }
                }
                Some(Frame::Component(component)) => match stack.last_mut() {
                    Some(Frame::Component(parent)) => parent.components.push(Some(component.needs)),
                    _ => result = Some(component.needs),
                },
                None => return Err("unbalanced sections".into()),
            },
            _ => {}
        }
    }
    result.ok_or_else(|| "not a component".to_owned())
}

/// The component being read; a component-level section inside a module is malformed.
fn current(stack: &mut [Frame]) -> Result<&mut ComponentFrame, String> {
    match stack.last_mut() {
        Some(Frame::Component(frame)) => Ok(frame),
        _ => Err("a component section outside a component".into()),
    }
}

/// Adds the module or component an alias names to the current index spaces.
fn alias_into(stack: &mut [Frame], alias: &ComponentAlias<'_>) -> Result<(), String> {
    match *alias {
        ComponentAlias::InstanceExport { kind, .. } => {
            let frame = current(stack)?;
            match kind {
                ComponentExternalKind::Module => frame.modules.push(None),
                ComponentExternalKind::Component => frame.components.push(None),
                _ => {}
            }
        }
        ComponentAlias::Outer { kind, count, index } => {
            let depth = stack.len();
            let outer = depth
                .checked_sub(1 + count as usize)
                .ok_or("an outer alias past the outermost component")?;
            let index = index as usize;
            let (module, nested) = match &stack[outer] {
                Frame::Component(outer) => (
                    outer.modules.get(index).copied().flatten(),
                    outer.components.get(index).copied().flatten(),
                ),
                Frame::Module(_) => return Err("an outer alias into a module".into()),
            };
            let frame = current(stack)?;
            match kind {
                ComponentOuterAliasKind::CoreModule => frame.modules.push(module),
                ComponentOuterAliasKind::Component => frame.components.push(nested),
                ComponentOuterAliasKind::CoreType | ComponentOuterAliasKind::Type => {}
            }
        }
        ComponentAlias::CoreInstanceExport { .. } => {}
    }
    Ok(())
}

/// The core instances wasmtime counted for a component, when `err` is its pooling
/// allocator refusing the component for having more per instance than the pool allows.
pub fn counted_by_wasmtime(err: &wasmtime::Error) -> Option<u32> {
    let message = format!("{err:#}");
    let (_, rest) = message.split_once("transitively contains ")?;
    let (count, rest) = rest.split_once(' ')?;
    rest.starts_with("core module instances")
        .then(|| count.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wasmtimes_count_of_core_instances() {
        let err = wasmtime::Error::msg(
            "The component transitively contains 9 core module instances, which exceeds the configured maximum of 8 in the pooling allocator",
        );
        assert_eq!(counted_by_wasmtime(&err), Some(9));
        let err =
            wasmtime::Error::msg("The component transitively contains 3 Wasm linear memories");
        assert_eq!(counted_by_wasmtime(&err), None);
    }
}
