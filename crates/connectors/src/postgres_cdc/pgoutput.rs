//! The pgoutput logical decoding protocol (version 1), as
//! `pg_logical_slot_peek_binary_changes` returns it: one message per row.
//! Only what a sync needs is kept; other messages (types, origins) are
//! recognised and skipped. Values arrive in text form.

/// One column of a relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    /// Part of the replica identity (the key).
    pub key: bool,
}

/// A table as the stream describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
}

/// One column's value in a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datum {
    Null,
    /// A TOASTed value the update did not change (not sent).
    Unchanged,
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Begin {
        /// The commit's LSN.
        final_lsn: u64,
        xid: u32,
    },
    Commit {
        /// Just past the commit record: where the next run starts.
        end_lsn: u64,
    },
    Relation(Relation),
    Insert {
        relation: u32,
        new: Vec<Datum>,
    },
    Update {
        relation: u32,
        /// The old key ('K') or old row ('O'), when the stream sent one.
        old: Option<Vec<Datum>>,
        new: Vec<Datum>,
    },
    Delete {
        relation: u32,
        old: Vec<Datum>,
    },
    Truncate {
        relations: Vec<u32>,
    },
    /// Anything else (type, origin, logical message).
    Other,
}

/// Why a message could not be read: the stream is not what pgoutput sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable pgoutput message: {0}")]
pub struct Malformed(pub &'static str);

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed("message ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        let bytes = self.take(2)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        let high = u64::from(self.u32()?);
        Ok(high << 32 | u64::from(self.u32()?))
    }

    fn cstring(&mut self) -> Result<String, Malformed> {
        let end = self
            .0
            .iter()
            .position(|byte| *byte == 0)
            .ok_or(Malformed("a name without its terminator"))?;
        let text =
            std::str::from_utf8(&self.0[..end]).map_err(|_| Malformed("a name not UTF-8"))?;
        self.0 = &self.0[end + 1..];
        Ok(text.to_owned())
    }

    fn tuple(&mut self) -> Result<Vec<Datum>, Malformed> {
        let count = self.u16()?;
        (0..count)
            .map(|_| match self.u8()? {
                b'n' => Ok(Datum::Null),
                b'u' => Ok(Datum::Unchanged),
                b't' => {
                    let length = self.u32()? as usize;
                    let bytes = self.take(length)?;
                    std::str::from_utf8(bytes)
                        .map(|text| Datum::Text(text.to_owned()))
                        .map_err(|_| Malformed("a value not UTF-8"))
                }
                _ => Err(Malformed("an unknown tuple value kind")),
            })
            .collect()
    }
}

/// Reads one message.
pub fn parse(bytes: &[u8]) -> Result<Message, Malformed> {
    let mut reader = Reader(bytes);
    let message = match reader.u8()? {
        b'B' => {
            let final_lsn = reader.u64()?;
            let _commit_time = reader.u64()?;
            Message::Begin {
                final_lsn,
                xid: reader.u32()?,
            }
        }
        b'C' => {
            let _flags = reader.u8()?;
            let _commit_lsn = reader.u64()?;
            Message::Commit {
                end_lsn: reader.u64()?,
            }
        }
        b'R' => {
            let id = reader.u32()?;
            let schema = reader.cstring()?;
            let name = reader.cstring()?;
            let _replica_identity = reader.u8()?;
            let count = reader.u16()?;
            let columns = (0..count)
                .map(|_| {
                    let flags = reader.u8()?;
                    let name = reader.cstring()?;
                    let type_oid = reader.u32()?;
                    let _type_modifier = reader.u32()?;
                    Ok(Column {
                        name,
                        type_oid,
                        key: flags & 1 == 1,
                    })
                })
                .collect::<Result<_, Malformed>>()?;
            Message::Relation(Relation {
                id,
                schema,
                name,
                columns,
            })
        }
        b'I' => {
            let relation = reader.u32()?;
            if reader.u8()? != b'N' {
                return Err(Malformed("an insert without its new tuple"));
            }
            Message::Insert {
                relation,
                new: reader.tuple()?,
            }
        }
        b'U' => {
            let relation = reader.u32()?;
            let (old, marker) = match reader.u8()? {
                b'K' | b'O' => (Some(reader.tuple()?), reader.u8()?),
                other => (None, other),
            };
            if marker != b'N' {
                return Err(Malformed("an update without its new tuple"));
            }
            Message::Update {
                relation,
                old,
                new: reader.tuple()?,
            }
        }
        b'D' => {
            let relation = reader.u32()?;
            if !matches!(reader.u8()?, b'K' | b'O') {
                return Err(Malformed("a delete without its old key"));
            }
            Message::Delete {
                relation,
                old: reader.tuple()?,
            }
        }
        b'T' => {
            let count = reader.u32()?;
            let _options = reader.u8()?;
            Message::Truncate {
                relations: (0..count).map(|_| reader.u32()).collect::<Result<_, _>>()?,
            }
        }
        b'Y' | b'O' | b'M' => Message::Other,
        _ => return Err(Malformed("an unknown message type")),
    };
    Ok(message)
}

/// An LSN as Postgres writes it (`16/B374D848`).
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// An LSN from Postgres's text.
pub fn lsn_parse(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    (high <= 0xFFFF_FFFF && low <= 0xFFFF_FFFF).then_some(high << 32 | low)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(values: &[Option<&str>]) -> Vec<u8> {
        let mut bytes = (values.len() as u16).to_be_bytes().to_vec();
        for value in values {
            match value {
                None => bytes.push(b'n'),
                Some(text) => {
                    bytes.push(b't');
                    bytes.extend((text.len() as u32).to_be_bytes());
                    bytes.extend(text.as_bytes());
                }
            }
        }
        bytes
    }

    #[test]
    fn begin_commit_and_relations_are_read() {
        let mut begin = vec![b'B'];
        begin.extend(0x1_0000_0010u64.to_be_bytes());
        begin.extend(0u64.to_be_bytes());
        begin.extend(742u32.to_be_bytes());
        assert_eq!(
            parse(&begin),
            Ok(Message::Begin {
                final_lsn: 0x1_0000_0010,
                xid: 742
            })
        );
        let mut commit = vec![b'C', 0];
        commit.extend(5u64.to_be_bytes());
        commit.extend(9u64.to_be_bytes());
        commit.extend(0u64.to_be_bytes());
        assert_eq!(parse(&commit), Ok(Message::Commit { end_lsn: 9 }));
        let mut relation = vec![b'R'];
        relation.extend(16385u32.to_be_bytes());
        relation.extend(b"public\0items\0d");
        relation.extend(2u16.to_be_bytes());
        relation.extend(b"\x01id\0");
        relation.extend(23u32.to_be_bytes());
        relation.extend((-1i32).to_be_bytes());
        relation.extend(b"\x00name\0");
        relation.extend(25u32.to_be_bytes());
        relation.extend((-1i32).to_be_bytes());
        let Ok(Message::Relation(read)) = parse(&relation) else {
            panic!("a relation");
        };
        assert_eq!((read.id, read.schema.as_str()), (16385, "public"));
        assert_eq!(
            read.columns
                .iter()
                .map(|c| (c.name.as_str(), c.type_oid, c.key))
                .collect::<Vec<_>>(),
            [("id", 23, true), ("name", 25, false)]
        );
        assert!(parse(&relation[..relation.len() - 3]).is_err());
    }

    #[test]
    fn changes_carry_their_tuples() {
        let mut insert = vec![b'I'];
        insert.extend(7u32.to_be_bytes());
        insert.push(b'N');
        insert.extend(tuple(&[Some("1"), None]));
        assert_eq!(
            parse(&insert),
            Ok(Message::Insert {
                relation: 7,
                new: vec![Datum::Text("1".into()), Datum::Null]
            })
        );
        let mut update = vec![b'U'];
        update.extend(7u32.to_be_bytes());
        update.push(b'K');
        update.extend(tuple(&[Some("1")]));
        update.push(b'N');
        update.extend(tuple(&[Some("2"), Some("x")]));
        assert!(matches!(
            parse(&update),
            Ok(Message::Update { old: Some(old), new, .. }) if old.len() == 1 && new.len() == 2
        ));
        let mut delete = vec![b'D'];
        delete.extend(7u32.to_be_bytes());
        delete.push(b'K');
        delete.extend(tuple(&[Some("1")]));
        assert!(matches!(
            parse(&delete),
            Ok(Message::Delete { relation: 7, .. })
        ));
        let mut truncate = vec![b'T'];
        truncate.extend(2u32.to_be_bytes());
        truncate.push(0);
        truncate.extend(7u32.to_be_bytes());
        truncate.extend(8u32.to_be_bytes());
        assert_eq!(
            parse(&truncate),
            Ok(Message::Truncate {
                relations: vec![7, 8]
            })
        );
        assert!(parse(b"Z").is_err());
        assert!(parse(b"").is_err());
    }

    #[test]
    fn lsns_read_and_write_as_postgres_does() {
        assert_eq!(lsn_parse("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(lsn_text(0x16_B374_D848), "16/B374D848");
        assert_eq!(lsn_parse("0/0"), Some(0));
        assert_eq!(lsn_parse("nonsense"), None);
    }
}
