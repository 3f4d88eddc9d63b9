//! The bytes of a REG_SZ or REG_MULTI_SZ value as its strings: what
//! SetupAPI hands over for a device's registry property (its compatible
//! ids, its description) in [`super::setupapi`].
//!
//! Pure bytes in, strings out: compiled on every OS, so Linux CI tests and
//! fuzzes it; only the Windows probe calls it. The bytes are whatever the
//! device's driver and the registry hold, so nothing about them is trusted.

/// UTF-16LE strings, each ended by a NUL, the list ended by an empty string
/// (REG_MULTI_SZ) or by the end of the data (a REG_SZ is a list of one, and
/// the buffer may be longer than the value, zero-filled). A last odd byte
/// is not a code unit and is left out; an unpaired surrogate becomes
/// U+FFFD, as Windows' own conversions do.
pub fn decode_multi_sz(bytes: &[u8]) -> Vec<String> {
    let wide: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    wide.split(|&c| c == 0)
        .take_while(|s| !s.is_empty())
        .map(String::from_utf16_lossy)
        .collect()
}

/// A NUL-terminated UTF-16 buffer as text (all of it when no NUL ends it).
pub fn wide_to_string(buffer: &[u16]) -> String {
    let end = buffer.iter().position(|&c| c == 0).unwrap_or(buffer.len());
    String::from_utf16_lossy(&buffer[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(text: &str) -> Vec<u8> {
        text.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn a_multi_sz_is_its_strings_up_to_the_empty_one() {
        // SPDRP_COMPATIBLEIDS of a USB stick's interface node.
        let mut bytes = utf16le("USB\\Class_08&SubClass_06&Prot_50\0USB\\Class_08\0\0");
        bytes.extend_from_slice(&[0; 16]);
        assert_eq!(
            decode_multi_sz(&bytes),
            ["USB\\Class_08&SubClass_06&Prot_50", "USB\\Class_08"]
        );
    }

    #[test]
    fn a_reg_sz_in_a_longer_buffer_is_one_string() {
        let mut bytes = utf16le("SanDisk Cruzer Blade\0");
        bytes.resize(1024, 0);
        assert_eq!(decode_multi_sz(&bytes), ["SanDisk Cruzer Blade"]);
    }

    #[test]
    fn an_odd_byte_and_a_lone_surrogate_do_not_fail() {
        let mut bytes = utf16le("ab");
        bytes.extend_from_slice(&0xd800u16.to_le_bytes());
        bytes.push(b'x');
        assert_eq!(decode_multi_sz(&bytes), ["ab\u{fffd}"]);
        assert!(decode_multi_sz(&[]).is_empty());
        assert!(decode_multi_sz(&[0, 0, b'a', 0]).is_empty());
    }

    #[test]
    fn a_wide_buffer_ends_at_its_nul_or_its_end() {
        let id: Vec<u16> = "USB\\VID_0781\0junk".encode_utf16().collect();
        assert_eq!(wide_to_string(&id), "USB\\VID_0781");
        let unterminated: Vec<u16> = "abc".encode_utf16().collect();
        assert_eq!(wide_to_string(&unterminated), "abc");
    }
}
