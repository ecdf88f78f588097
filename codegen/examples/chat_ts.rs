//! Writes the chat example's TypeScript client module.
//!
//! ```text
//! cargo run -p hardlight-codegen --example chat_ts -- clients/ts/examples/chat/chat.gen.ts
//! ```
//!
//! The test `chat_module_is_up_to_date` fails when the committed module
//! differs from what this writes.

#[allow(dead_code)]
#[path = "../../server-uring/examples/api/chat.rs"]
mod api;

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "clients/ts/examples/chat/chat.gen.ts".into());
    let ts = hardlight_codegen::TypeScript::new::<api::ChatMethod>()
        .state::<api::ChatState>()
        .runtime_import("../../src/index.js")
        .render()
        .unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1);
        });
    std::fs::write(&out, &ts).unwrap_or_else(|e| {
        eprintln!("error: cannot write {out}: {e}");
        std::process::exit(1);
    });
    println!("wrote {out} ({} bytes)", ts.len());
}
