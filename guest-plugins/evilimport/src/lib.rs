//! `evilimport`: implements `cojobs:plugin/plugin` but also imports
//! `evil:thing/x`, which no host provides. Tests that the host refuses it at
//! load time with a clear message. Does not use the SDK.
wit_bindgen::generate!({
    path: "wit",
    world: "evil:thing/evil@0.1.0",
    generate_all,
});


struct Evil;

impl Guest for Evil {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "evilimport".into(),
            version: "0.1.0".into(),
            description: "Imports an interface the host does not provide (test plugin).".into(),
            modes: Vec::new(),
            params: Vec::new(),
        }
    }
    fn run(_job: Job) -> Result<String, Failure> {
        // Calling the import keeps it in the component's imports.
        Ok(evil::thing::x::steal())
    }
}

export!(Evil);
