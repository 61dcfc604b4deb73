pub mod bindings {
    wit_bindgen::generate!({
        path: concat!(env!("OUT_DIR"), "/wit"),
        world: "aops-plugin",
        pub_export_macro: true,
        default_bindings_module: "aopsfs_plugin_sdk::bindings",
    });
}
