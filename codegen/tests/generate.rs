//! The generator's output: the committed chat module is what the chat
//! service generates today, and what TypeScript cannot represent is refused.

#[allow(dead_code)]
#[path = "../../server-uring/examples/api/chat.rs"]
mod api;

use hardlight_codegen::{GenError, TypeScript};

#[test]
fn chat_module_is_up_to_date() {
    let ts = TypeScript::new::<api::ChatMethod>()
        .state::<api::ChatState>()
        .runtime_import("../../src/index.js")
        .render()
        .expect("the chat service renders");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../clients/ts/examples/chat/chat.gen.ts");
    let committed = std::fs::read_to_string(path).expect("committed module");
    assert!(
        ts == committed,
        "clients/ts/examples/chat/chat.gen.ts is stale: run `cargo run -p hardlight-codegen --example chat_ts`"
    );
    // What the module must contain for the chat page to work.
    assert!(ts.contains(&format!("export const FINGERPRINT = \"{:016x}\"", api::ChatMethod::FINGERPRINT)));
    for needle in [
        "export interface ChatMessage {\n  seq: bigint;",
        "| { tag: \"TooLong\"; 0: number; }",
        "export interface ChatState {\n  user: string;\n  threads: string[];\n}",
        "sendMessage(thread: string, text: string, options?: CallOptions): Promise<Result<bigint, ChatError>>",
        "{ id: 0, name: \"ChatMessage\", shape: { k: \"ref\", name: \"ChatMessage\" } }",
    ] {
        assert!(ts.contains(needle), "missing {needle:?}");
    }
}

#[allow(dead_code)]
mod ambiguous {
    #[hardlight::wire]
    pub struct Holder {
        pub x: Option<Option<u8>>,
    }

    #[hardlight::rpc]
    pub trait Amb {
        async fn get(&self) -> Holder;
    }
}

#[allow(dead_code)]
mod tagged {
    #[hardlight::wire]
    pub enum Shape {
        Circle { tag: u8 },
    }

    #[hardlight::rpc]
    pub trait Tagged {
        async fn get(&self) -> Shape;
    }
}

#[test]
fn unrepresentable_types_are_refused_with_a_reason() {
    let e = TypeScript::new::<ambiguous::AmbMethod>().render().unwrap_err();
    assert_eq!(e, GenError::AmbiguousOption("number | null | null".into()));
    let e = TypeScript::new::<tagged::TaggedMethod>().render().unwrap_err();
    assert_eq!(e, GenError::TagField("Shape::Circle".into()));
}
