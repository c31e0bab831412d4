//! Deterministic mbox data for the benches.

/// About `mb` MiB of mbox: messages of 2–40 KB, some body lines quoted, some Status headers.
pub fn mbox_bytes(mb: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(mb << 20);
    let mut i = 0u64;
    while out.len() < mb << 20 {
        i += 1;
        let size = 2000 + (i * 7919 % 38000) as usize;
        out.extend_from_slice(format!("From sender{i}@example.com Mon Jan  2 15:04:05 2006\n").as_bytes());
        out.extend_from_slice(format!("From: Sender <sender{i}@example.com>\nSubject: message {i}\n").as_bytes());
        if i.is_multiple_of(3) {
            out.extend_from_slice(b"Status: RO\nX-Status: A\n");
        }
        out.extend_from_slice(b"\n");
        let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\n";
        let mut body = 0;
        while body < size {
            if body == 0 && i.is_multiple_of(50) {
                out.extend_from_slice(b">From the archives\n");
            }
            out.extend_from_slice(line);
            body += line.len();
        }
        out.extend_from_slice(b"\n");
    }
    out
}
