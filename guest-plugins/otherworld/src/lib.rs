//! `otherworld`: a valid component that implements a different world
//! (`other:thing/thing`, exporting `frob`), not `cojobs:plugin/plugin`.
//! Tests that the host refuses it with a clear message. Does not use the SDK.
wit_bindgen::generate!({
    inline: "
        package other:thing@0.1.0;
        world thing {
            export frob: func() -> u32;
        }
    ",
});

struct Other;

impl Guest for Other {
    fn frob() -> u32 {
        42
    }
}

export!(Other);
