//! A raw tar writer: ustar headers, PAX records for whatever ustar cannot hold (long names
//! and link targets, large ids and sizes, xattrs), and entry data checked against the size
//! its header announced. The layer packer and every producer of content for the extractor
//! (COPY/ADD, volume copy-up) write through it, so there is one way boxkit writes tar.
//!
//! Names are written byte for byte as given — no cleaning and no refusal of `..` or absolute
//! names: judging names is the extractor's job ([`super::extract`]), and a producer that
//! passes a hostile archive's names through must not launder them first.

use std::io::{self, Read, Write};

use tar::{EntryType, Header};

/// One tar entry's header fields.
#[derive(Debug, Clone)]
pub struct TarEntry<'a> {
    pub path: &'a [u8],
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub size: u64,
    pub link: Option<&'a [u8]>,
    pub dev: Option<(u32, u32)>,
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

impl<'a> TarEntry<'a> {
    /// An entry of `kind` at `path` with everything else zero or empty.
    pub fn new(path: &'a [u8], kind: EntryType) -> TarEntry<'a> {
        TarEntry {
            path,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: None,
            dev: None,
            xattrs: &[],
        }
    }
}

/// Writes tar into `W`.
pub struct TarWriter<W: Write> {
    out: W,
    /// `SOURCE_DATE_EPOCH`: mtimes are clamped to it.
    epoch: Option<i64>,
    buf: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, epoch: Option<i64>) -> TarWriter<W> {
        TarWriter {
            out,
            epoch,
            buf: Vec::new(),
        }
    }

    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)
    }

    pub fn header(&mut self, e: &TarEntry) -> io::Result<()> {
        const MAX_ID: u64 = 0o7777777;
        const MAX_SIZE: u64 = 0o77777777777;
        let mtime = match self.epoch {
            Some(epoch) => e.mtime.min(epoch),
            None => e.mtime,
        }
        .clamp(0, MAX_SIZE as i64) as u64;

        let mut pax = Vec::new();
        if e.path.len() > 100 {
            pax_record(&mut pax, b"path", e.path);
        }
        if let Some(link) = e.link.filter(|l| l.len() > 100) {
            pax_record(&mut pax, b"linkpath", link);
        }
        if e.uid > MAX_ID {
            pax_record(&mut pax, b"uid", e.uid.to_string().as_bytes());
        }
        if e.gid > MAX_ID {
            pax_record(&mut pax, b"gid", e.gid.to_string().as_bytes());
        }
        if e.size > MAX_SIZE {
            pax_record(&mut pax, b"size", e.size.to_string().as_bytes());
        }
        for (k, v) in e.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax_record(&mut pax, &key, v);
        }
        if !pax.is_empty() {
            let mut name = b"PaxHeaders/".to_vec();
            let base = e.path.rsplit(|&b| b == b'/').find(|s| !s.is_empty());
            name.extend_from_slice(base.unwrap_or(b"root"));
            let mut h = Header::new_ustar();
            set_name(&mut h, &name, false);
            h.set_entry_type(EntryType::XHeader);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(mtime);
            h.set_size(pax.len() as u64);
            h.set_cksum();
            self.write(h.as_bytes())?;
            let pad = (512 - pax.len() % 512) % 512;
            pax.resize(pax.len() + pad, 0);
            self.write(&pax)?;
        }

        let mut h = Header::new_ustar();
        set_name(&mut h, e.path, false);
        if let Some(link) = e.link {
            set_name(&mut h, link, true);
        }
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(if e.uid > MAX_ID { 0 } else { e.uid });
        h.set_gid(if e.gid > MAX_ID { 0 } else { e.gid });
        h.set_mtime(mtime);
        h.set_size(if e.size > MAX_SIZE { 0 } else { e.size });
        if let Some((major, minor)) = e.dev {
            // Both fit: ustar's 7 octal digits hold 21 bits, Linux majors are 12, minors 20.
            let _ = h.set_device_major(major);
            let _ = h.set_device_minor(minor);
        }
        h.set_cksum();
        self.write(h.as_bytes())
    }

    /// Copy exactly `size` bytes of entry data from `r` and pad to the block size. A reader
    /// that ends early (a file that shrank while being read) is an `UnexpectedEof` error;
    /// bytes beyond `size` are never read.
    pub fn data(&mut self, r: &mut impl Read, size: u64) -> io::Result<()> {
        if self.buf.is_empty() {
            self.buf = vec![0u8; 1 << 20];
        }
        let mut left = size;
        let mut buf = std::mem::take(&mut self.buf);
        let r = (|| {
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = match r.read(&mut buf[..want]) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("ended {left} bytes short of the {size} announced"),
                        ));
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                self.out.write_all(&buf[..n])?;
                left -= n as u64;
            }
            Ok(())
        })();
        self.buf = buf;
        r?;
        let pad = (512 - (size % 512) as usize) % 512;
        self.write(&[0u8; 512][..pad])
    }

    /// Write the end-of-archive marker and flush; returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write(&[0u8; 1024])?;
        self.out.flush()?;
        Ok(self.out)
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

/// Put a name into the 100-byte ustar name (or link name) field. Longer names are truncated
/// here and carried whole by a PAX record, which every reader prefers.
fn set_name(h: &mut Header, name: &[u8], link: bool) {
    let ustar = h.as_ustar_mut().expect("ustar header");
    let field = if link {
        &mut ustar.linkname
    } else {
        &mut ustar.name
    };
    let n = name.len().min(100);
    field[..n].copy_from_slice(&name[..n]);
}

/// Append one PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record,
/// its own digits included.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut v = Vec::new();
        pax_record(&mut v, b"path", b"x");
        assert_eq!(v, b"9 path=x\n");
        let mut v = Vec::new();
        pax_record(&mut v, b"path", &[b'a'; 95]);
        // 4+95+3 = 102 body bytes plus 3 digits = 105.
        assert!(v.starts_with(b"105 path="));
        assert_eq!(v.len(), 105);
    }
}
