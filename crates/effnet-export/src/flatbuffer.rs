//! A small FlatBuffers writer for the tables `build.rs` generates from a `.fbs` schema: each
//! table lists its present fields ([`Table::fields`]), and [`finish`] lays the buffer out front
//! to back — root offset and file identifier, then every table as its vtable followed by the
//! table, then the table's strings, vectors and sub-tables, whose offsets are patched in. Every
//! scalar sits at an address aligned to its size (vector data to the schema's `force_align`),
//! relative to the buffer start, so the buffer passes FlatBuffers' verifier with alignment
//! checks on. Offsets always point forward, as the format requires.

/// A scalar as a table field or vector element: little-endian bytes.
pub trait Scalar: Copy {
    /// Size in bytes (also the alignment).
    const SIZE: usize;
    /// Appends the little-endian bytes of `self`.
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
scalar!(i8, u8, i16, u16, i32, u32, i64, u64, f32, f64);

impl Scalar for bool {
    const SIZE: usize = 1;
    fn put(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
}

/// One present field of a table.
pub enum Field<'a> {
    /// An inline scalar: its little-endian bytes (1, 2, 4 or 8 of them).
    Scalar(Vec<u8>),
    /// A string (UTF-8, written with its terminating NUL).
    Str(&'a str),
    /// A vector of scalars: element bytes, element size, element count, data alignment.
    Scalars {
        /// Little-endian element bytes.
        bytes: std::borrow::Cow<'a, [u8]>,
        /// Bytes per element.
        size: usize,
        /// Number of elements.
        len: usize,
        /// Alignment of the element data (at least `size`).
        align: usize,
    },
    /// A sub-table (or a union's value).
    Table(&'a dyn Table),
    /// A vector of tables.
    Tables(Vec<&'a dyn Table>),
}

impl<'a> Field<'a> {
    /// An inline scalar.
    pub fn scalar<T: Scalar>(v: T) -> Self {
        let mut bytes = Vec::with_capacity(T::SIZE);
        v.put(&mut bytes);
        Field::Scalar(bytes)
    }

    /// A vector of scalars, its data aligned to at least `force_align`.
    pub fn scalars<T: Scalar>(v: &'a [T], force_align: usize) -> Self {
        let mut bytes = Vec::with_capacity(v.len() * T::SIZE);
        for &x in v {
            x.put(&mut bytes);
        }
        Field::Scalars {
            bytes: bytes.into(),
            size: T::SIZE,
            len: v.len(),
            align: force_align.max(T::SIZE),
        }
    }

    /// A vector of bytes, borrowed (large weight buffers are not copied here).
    pub fn bytes(v: &'a [u8], force_align: usize) -> Self {
        Field::Scalars {
            bytes: v.into(),
            size: 1,
            len: v.len(),
            align: force_align.max(1),
        }
    }

    /// Bytes this field takes inside its table (offsets are 4).
    fn inline_size(&self) -> usize {
        match self {
            Field::Scalar(b) => b.len(),
            _ => 4,
        }
    }
}

/// A table the writer can lay out.
pub trait Table {
    /// `(slot, value)` of every field to write (absent and default-valued ones left out).
    fn fields(&self) -> Vec<(u16, Field<'_>)>;
}

/// Serialises `root` with the 4-byte file identifier `ident`.
pub fn finish(root: &dyn Table, ident: &[u8; 4]) -> Vec<u8> {
    let mut w = Writer { buf: vec![0; 8] };
    w.buf[4..8].copy_from_slice(ident);
    let root = w.table(root);
    w.patch(0, root);
    w.buf
}

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Pads with zeros until `len + extra` is a multiple of `align`.
    fn pad(&mut self, align: usize, extra: usize) {
        while !(self.buf.len() + extra).is_multiple_of(align) {
            self.buf.push(0);
        }
    }

    /// Writes at `at` the forward offset to `target`.
    fn patch(&mut self, at: usize, target: usize) {
        let offset = u32::try_from(target - at).expect("flatbuffer larger than 4 GiB");
        self.buf[at..at + 4].copy_from_slice(&offset.to_le_bytes());
    }

    fn u32(&mut self, v: usize) {
        let v = u32::try_from(v).expect("flatbuffer vector longer than 2^32");
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes `t` (vtable, table, then its children); returns the table's position.
    fn table(&mut self, t: &dyn Table) -> usize {
        let mut fields = t.fields();
        // Largest fields first: each lands on its alignment without padding between them.
        fields.sort_by_key(|(slot, f)| (std::cmp::Reverse(f.inline_size()), *slot));
        let mut offsets = Vec::with_capacity(fields.len());
        let mut end = 4usize; // the table starts with its vtable offset
        for (_, f) in &fields {
            let size = f.inline_size();
            end = end.next_multiple_of(size);
            offsets.push(end);
            end += size;
        }
        let table_size = end.next_multiple_of(4);
        let slots = fields
            .iter()
            .map(|(s, _)| *s as usize + 1)
            .max()
            .unwrap_or(0);
        let mut vtable = vec![0u16; 2 + slots];
        vtable[0] = (2 * vtable.len()) as u16;
        vtable[1] = u16::try_from(table_size).expect("table larger than 64 KiB");
        for ((slot, _), &off) in fields.iter().zip(&offsets) {
            vtable[2 + *slot as usize] = off as u16;
        }
        self.pad(2, 0);
        let vtable_at = self.buf.len();
        for v in vtable {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        // 8-aligned tables keep 8-byte fields aligned in the buffer.
        self.pad(8, 0);
        let at = self.buf.len();
        self.buf.resize(at + table_size, 0);
        let back = i32::try_from(at - vtable_at).expect("vtable within reach");
        self.buf[at..at + 4].copy_from_slice(&back.to_le_bytes());
        for ((_, f), &off) in fields.iter().zip(&offsets) {
            if let Field::Scalar(bytes) = f {
                self.buf[at + off..at + off + bytes.len()].copy_from_slice(bytes);
            }
        }
        for ((_, f), &off) in fields.iter().zip(&offsets) {
            if !matches!(f, Field::Scalar(_)) {
                let child = self.child(f);
                self.patch(at + off, child);
            }
        }
        at
    }

    /// Writes a string, vector or table field's data; returns the position its offset names.
    fn child(&mut self, f: &Field<'_>) -> usize {
        match f {
            Field::Scalar(_) => unreachable!("scalars are inline"),
            Field::Table(t) => self.table(*t),
            Field::Str(s) => {
                self.pad(4, 0);
                let at = self.buf.len();
                self.u32(s.len());
                self.buf.extend_from_slice(s.as_bytes());
                self.buf.push(0);
                at
            }
            Field::Scalars {
                bytes, len, align, ..
            } => {
                // The length is 4-aligned and the data right after it `align`-aligned.
                self.pad((*align).max(4), 4);
                let at = self.buf.len();
                self.u32(*len);
                self.buf.extend_from_slice(bytes);
                at
            }
            Field::Tables(tables) => {
                self.pad(4, 0);
                let at = self.buf.len();
                self.u32(tables.len());
                self.buf.resize(at + 4 + 4 * tables.len(), 0);
                for (i, t) in tables.iter().enumerate() {
                    let child = self.table(*t);
                    self.patch(at + 4 + 4 * i, child);
                }
                at
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Leaf(i64, &'static str);
    impl Table for Leaf {
        fn fields(&self) -> Vec<(u16, Field<'_>)> {
            vec![(0, Field::scalar(self.0)), (2, Field::Str(self.1))]
        }
    }

    struct Root(Vec<Leaf>, Vec<u8>);
    impl Table for Root {
        fn fields(&self) -> Vec<(u16, Field<'_>)> {
            vec![
                (0, Field::scalar(7u8)),
                (
                    1,
                    Field::Tables(self.0.iter().map(|l| l as &dyn Table).collect()),
                ),
                (3, Field::bytes(&self.1, 16)),
            ]
        }
    }

    fn u32_at(b: &[u8], at: usize) -> usize {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
    }
    fn u16_at(b: &[u8], at: usize) -> usize {
        u16::from_le_bytes(b[at..at + 2].try_into().unwrap()) as usize
    }

    /// Reads field `slot` of the table at `t`: its position, or None when absent.
    fn field(b: &[u8], t: usize, slot: usize) -> Option<usize> {
        let back = i32::from_le_bytes(b[t..t + 4].try_into().unwrap());
        let vt = (t as i64 - back as i64) as usize;
        let vt_len = u16_at(b, vt);
        if 4 + 2 * slot >= vt_len {
            return None;
        }
        match u16_at(b, vt + 4 + 2 * slot) {
            0 => None,
            off => Some(t + off),
        }
    }

    #[test]
    fn layout_reads_back_with_aligned_fields_and_forward_offsets() {
        let root = Root(vec![Leaf(-5, "ab"), Leaf(1 << 40, "")], vec![1, 2, 3]);
        let b = finish(&root, b"TEST");
        assert_eq!(&b[4..8], b"TEST");
        let r = u32_at(&b, 0);
        assert_eq!(r % 8, 0);
        assert_eq!(b[field(&b, r, 0).unwrap()], 7);
        assert!(field(&b, r, 2).is_none(), "slot 2 absent");
        // Byte vector: data 16-aligned, after its length.
        let at = field(&b, r, 3).unwrap();
        let data = at + u32_at(&b, at);
        assert_eq!(u32_at(&b, data), 3);
        assert_eq!((data + 4) % 16, 0);
        assert_eq!(&b[data + 4..data + 7], &[1, 2, 3]);
        // Vector of tables.
        let at = field(&b, r, 1).unwrap();
        let vec = at + u32_at(&b, at);
        assert_eq!(u32_at(&b, vec), 2);
        let leaves: Vec<(i64, String)> = (0..2)
            .map(|i| {
                let e = vec + 4 + 4 * i;
                let t = e + u32_at(&b, e);
                let v = field(&b, t, 0).unwrap();
                assert_eq!(v % 8, 0, "i64 aligned");
                let s = field(&b, t, 2).unwrap();
                let s = s + u32_at(&b, s);
                let n = u32_at(&b, s);
                assert_eq!(b[s + 4 + n], 0, "NUL-terminated");
                (
                    i64::from_le_bytes(b[v..v + 8].try_into().unwrap()),
                    String::from_utf8(b[s + 4..s + 4 + n].to_vec()).unwrap(),
                )
            })
            .collect();
        assert_eq!(leaves, vec![(-5, "ab".into()), (1 << 40, String::new())]);
    }
}
