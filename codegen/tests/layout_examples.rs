//! The byte examples of docs/PROTOCOL.md section 5, as rkyv writes them.
//! `clients/ts/test/codec.test.mjs` checks the TypeScript codecs against
//! the same bytes; a change on either side shows here first.

/// PROTOCOL.md's struct example: a struct with a string and a vec.
#[hardlight::wire]
#[derive(Debug, PartialEq)]
pub struct Post {
    pub id: u16,
    pub body: String,
    pub tags: Vec<u32>,
}

/// PROTOCOL.md's enum example.
#[hardlight::wire]
#[derive(Debug, PartialEq)]
pub enum Figure {
    Dot,
    Circle(u8, u32),
    Rect { w: u16, h: u16 },
}

fn hex<T: hardlight::Wire>(v: &T) -> String {
    let b = hardlight::protocol::wire::encode(v).expect("encode");
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ")
}

#[test]
fn documented_archives() {
    let post = Post { id: 7, body: "hello, world".into(), tags: vec![1, 2] };
    let cases: Vec<(String, &str)> = vec![
        (hex(&post), "68 65 6c 6c 6f 2c 20 77 6f 72 6c 64 01 00 00 00 02 00 00 00 07 00 00 00 8c 00 00 00 e8 ff ff ff ec ff ff ff 02 00 00 00"),
        (hex(&Figure::Dot), "00 00 00 00 00 00 00 00"),
        (hex(&Figure::Circle(3, 500)), "01 03 00 00 f4 01 00 00"),
        (hex(&Figure::Rect { w: 2, h: 3 }), "02 00 02 00 03 00 00 00"),
        (hex(&Some(5u64)), "01 00 00 00 00 00 00 00 05 00 00 00 00 00 00 00"),
        (hex(&[1u16, 2, 3]), "01 00 02 00 03 00"),
        (hex(&(1u8, 2u64)), "01 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00"),
        (hex(&"abc".to_string()), "61 62 63 ff ff ff ff ff"),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
}

#[test]
fn strings_at_the_inline_boundary() {
    assert_eq!(hex(&"12345678".to_string()), "31 32 33 34 35 36 37 38");
    assert_eq!(hex(&"123456789".to_string()), "31 32 33 34 35 36 37 38 39 00 00 00 89 00 00 00 f4 ff ff ff");
}
