//! Checking that a component is an `aops-plugin` before instantiating it,
//! so a wrong component fails with a message that names what is missing
//! instead of a linker error (or a panic).

use std::path::Path;

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::plugin::bindings::{AOPS_EXPORT, AOPS_FUNCTIONS, HOST_INTERFACES};
use crate::plugin::error::PluginError;

/// Check the component's exports and imports against the world.
pub(crate) fn check_world(
    engine: &Engine,
    component: &Component,
    path: &Path,
) -> Result<(), PluginError> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        if !HOST_INTERFACES.contains(&name) && !name.starts_with("wasi:") {
            return Err(PluginError::UnsupportedImport {
                path: path.to_owned(),
                import: name.to_owned(),
            });
        }
    }
    let wrong = |missing: Vec<String>| PluginError::WrongWorld {
        path: path.to_owned(),
        missing,
    };
    let Some(export) = ty.get_export(engine, AOPS_EXPORT) else {
        let exports: Vec<String> = ty
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let exported = if exports.is_empty() {
            "nothing".to_owned()
        } else {
            exports.join(", ")
        };
        return Err(wrong(vec![format!(
            "missing export `{AOPS_EXPORT}` (the component exports {exported})"
        )]));
    };
    let ComponentItem::ComponentInstance(instance) = export.ty else {
        return Err(wrong(vec![format!(
            "export `{AOPS_EXPORT}` is not an interface instance"
        )]));
    };
    let missing: Vec<String> = AOPS_FUNCTIONS
        .iter()
        .filter(|func| {
            !matches!(
                instance.get_export(engine, func).map(|e| e.ty),
                Some(ComponentItem::ComponentFunc(_))
            )
        })
        .map(|func| format!("missing function `{func}` in export `{AOPS_EXPORT}`"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(wrong(missing))
    }
}
