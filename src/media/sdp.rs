//! Small SDP edits the media stack needs (RFC 4566 text, line by line).

/// Removes telephone-event entries whose clock is not 8000 Hz from a remote offer.
///
/// Browsers offer telephone-event at 48000 and 8000 Hz; webrtc-rs matches codecs without their
/// clock rate and answers with a duplicate payload type, losing the 8 kHz entry
/// (docs/architecture.md "Media"). We only speak telephone-event/8000.
pub fn without_wideband_telephone_events(sdp: &str) -> String {
    let dropped: Vec<&str> = sdp
        .lines()
        .filter_map(|line| line.trim_end().strip_prefix("a=rtpmap:"))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, encoding)| {
            let mut parts = encoding.split('/');
            parts
                .next()
                .is_some_and(|name| name.eq_ignore_ascii_case("telephone-event"))
                && parts.next() != Some("8000")
        })
        .map(|(pt, _)| pt)
        .collect();
    if dropped.is_empty() {
        return sdp.to_owned();
    }
    let names_dropped = |line: &str, prefix: &str| {
        line.strip_prefix(prefix)
            .and_then(|rest| rest.split([' ', ':']).next())
            .is_some_and(|pt| dropped.contains(&pt))
    };
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.lines() {
        let line = line.trim_end();
        if ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
            .iter()
            .any(|prefix| names_dropped(line, prefix))
        {
            continue;
        }
        if line.starts_with("m=") {
            let kept: Vec<&str> = line
                .split(' ')
                .enumerate()
                .filter(|(i, field)| *i < 3 || !dropped.contains(field))
                .map(|(_, field)| field)
                .collect();
            out.push_str(&kept.join(" "));
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

/// The first `a=mid:` of a description, which trickled candidates refer to.
pub fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|line| line.trim_end().strip_prefix("a=mid:"))
        .map(str::to_owned)
}

/// Legacy PBXs sometimes answer with `a=setup:actpass`, which is not a valid answer role; the
/// PBX then acts as the DTLS server, so we take the client role (docs/protocol.md §6).
pub fn answer_with_setup_fixed(sdp: &str) -> String {
    sdp.replace("a=setup:actpass", "a=setup:passive")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The audio section of a Chromium offer.
    const CHROME_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\n\
        a=mid:0\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n\
        a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\n\
        a=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\n\
        a=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n";

    #[test]
    fn drops_only_wideband_telephone_events() {
        let out = without_wideband_telephone_events(CHROME_OFFER);
        assert!(out.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 126\r\n"));
        assert!(!out.contains("telephone-event/48000"));
        assert!(out.contains("a=rtpmap:126 telephone-event/8000"));
        assert!(out.contains("a=fmtp:111 minptime=10"));
        assert_eq!(first_mid(&out), Some("0".into()));
    }

    #[test]
    fn leaves_other_offers_alone() {
        let plain = "v=0\r\nm=audio 9 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        assert_eq!(without_wideband_telephone_events(plain), plain);
        assert_eq!(first_mid(plain), None);
    }

    #[test]
    fn an_actpass_answer_makes_us_the_dtls_client() {
        let fixed = answer_with_setup_fixed("v=0\r\na=setup:actpass\r\n");
        assert_eq!(fixed, "v=0\r\na=setup:passive\r\n");
        assert_eq!(answer_with_setup_fixed("a=setup:active"), "a=setup:active");
    }
}
