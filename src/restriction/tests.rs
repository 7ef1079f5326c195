//! Restriction parsing and matching: examples, and properties against a reference.

mod unit {
    use super::super::pattern::match_cost;
    use super::super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn wildcard_matching() {
        let cases = [
            ("/v1/videos/*", "/v1/videos/42", true),
            ("/v1/videos/*", "/v1/videos/", true),
            ("/v1/videos/*", "/v1/videos", false),
            ("/v1/videos/*", "/v1/collections/1", false),
            (
                "https://*.example.com/*",
                "https://app.example.com/page",
                true,
            ),
            ("https://*.example.com/*", "https://example.com/page", false),
            (
                "https://*.example.com/*",
                "https://evil.com/.example.com/",
                false,
            ),
            ("https://*.example.com/*", "https://a.b.example.com/", true),
            ("/exact", "/exact", true),
            ("/exact", "/exact/more", false),
            ("*", "", true),
            ("*", "anything", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("ab*ba", "aba", false),
            ("*.json", "x.json", true),
            ("*.json", "x.jsonp", false),
            ("/v1/*/comments", "/v1/videos/comments", true),
            ("/v1/*/comments", "/v1/a/b/comments", false),
            ("/v1/videos/*", "/v1/videos/1/comments", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(p(pattern).matches(text), expected, "{pattern} vs {text}");
        }
    }

    #[test]
    fn paths_are_normalised_before_matching() {
        let r = Restrictions {
            allowed_paths: vec![p("/v1/videos/*")],
            ..Restrictions::default()
        };
        for attack in [
            "/v1/videos/../admin",
            "/v1/videos/%2e%2e/admin",
            "/v1/videos/%2E%2E/admin",
            "/v1/videos/..%2f..%2fadmin",
            "/v1/videos/%2e%2e%2fadmin",
            "/v1/videos/..%5cadmin",
            "/v1/videos/..\\admin",
            "/v1/videos//../admin",
            "/v1/videos/..;/admin",
            "/v1/videos/x%00",
            "/v1/videos/%zz",
            "/v1/videos/%2",
            "v1/videos/1",
            "/v1/videos/./../../admin",
        ] {
            assert!(!r.allows_path(attack), "{attack}");
        }
        for ok in [
            "/v1/videos/1",
            "/v1/videos/./1",
            "/v1/%76ideos/1",
            "/v1/videos/a%20b",
            "/v1/collections/../videos/1?x=1",
            "/v1/videos/1/comments/..",
        ] {
            assert!(r.allows_path(ok), "{ok}");
        }
        assert_eq!(normalize_path("/a/b/../c").as_deref(), Some("/a/c"));
        assert_eq!(normalize_path("/a/..").as_deref(), Some("/"));
        assert_eq!(normalize_path("/..").as_deref(), Some("/"));
        assert_eq!(normalize_path("/a/./b/.").as_deref(), Some("/a/b/"));
        assert_eq!(normalize_path("/a%2db%7e").as_deref(), Some("/a-b~"));
        assert_eq!(normalize_path("/a%3fb").as_deref(), Some("/a%3Fb"));
        assert_eq!(
            normalize_path(&format!("/{}", "a".repeat(MAX_PATH_LEN))),
            None
        );
    }

    #[test]
    fn matching_work_is_linear() {
        // The hostile case: 512-character patterns of many stars against a long path.
        let pattern = "*a".repeat(255) + "*b";
        let text = "a".repeat(8192);
        let (matched, cost) = match_cost(&pattern, &text);
        assert!(!matched);
        assert!(
            cost <= 4 * (pattern.len() + text.len()),
            "examined {cost} bytes for a {}-byte pattern and {}-byte text",
            pattern.len(),
            text.len()
        );
        let segments = "/a".repeat(4096);
        let (_, cost) = match_cost("/*/*/*/*/*/*/*/*/*/*/*/*/z", &segments);
        assert!(cost <= 4 * (segments.len() + 26), "{cost}");
    }

    #[test]
    fn ipv4_mapped_networks_match_ipv4_clients() {
        assert_eq!(
            parse_cidr("::ffff:10.0.0.0/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_cidr("::ffff:10.1.2.3").unwrap().to_string(),
            "10.1.2.3/32"
        );
        let r = Restrictions {
            allowed_cidrs: vec![parse_cidr("::ffff:10.0.0.0/104").unwrap()],
            ..Restrictions::default()
        };
        assert!(r.allows_ip(parse_client_ip("10.1.2.3")));
        assert!(r.allows_ip(parse_client_ip("::ffff:10.1.2.3")));
        assert!(!r.allows_ip(parse_client_ip("11.1.2.3")));
        let all_v6 = Restrictions {
            allowed_cidrs: vec![parse_cidr("::/0").unwrap()],
            ..Restrictions::default()
        };
        assert!(
            all_v6.allows_ip(parse_client_ip("10.1.2.3")),
            "::/0 holds every mapped IPv4 address"
        );
        assert!(parse_cidr(&"1".repeat(1_000_000)).unwrap_err().len() < 120);
    }

    #[test]
    fn pattern_validation() {
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse("has space").is_err());
        assert!(Pattern::parse(&"a".repeat(513)).is_err());
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_cidr("2001:db8::1/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        for bad in [
            "",
            "10.0.0.0/33",
            "300.1.1.1/8",
            "10.0.0.0/",
            "example.com",
            "::g/64",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ip_restrictions() {
        let r = Restrictions {
            allowed_cidrs: vec![
                parse_cidr("203.0.113.0/24").unwrap(),
                parse_cidr("2001:db8::/32").unwrap(),
            ],
            ..Restrictions::default()
        };
        assert!(r.allows_ip(parse_client_ip("203.0.113.9")));
        assert!(r.allows_ip(parse_client_ip("203.0.113.9:4431")));
        assert!(r.allows_ip(parse_client_ip("::ffff:203.0.113.9")));
        assert!(r.allows_ip(parse_client_ip("2001:db8::5")));
        assert!(r.allows_ip(parse_client_ip("[2001:db8::5]:443")));
        assert!(!r.allows_ip(parse_client_ip("198.51.100.1")));
        assert!(!r.allows_ip(parse_client_ip("")), "a missing IP is denied");
        assert!(!r.allows_ip(parse_client_ip("garbage")));
        assert!(Restrictions::default().allows_ip(parse_client_ip("")));
    }

    #[test]
    fn method_path_referrer_restrictions() {
        let r = Restrictions {
            allowed_methods: vec![
                Method::parse("get").unwrap(),
                Method::parse("HEAD").unwrap(),
            ],
            allowed_paths: vec![p("/v1/videos/*")],
            allowed_referrers: vec![p("https://*.example.com/*")],
            ..Restrictions::default()
        };
        let m = |text: &str| Method::parse(text).ok();
        assert!(r.allows_method(m("GET").as_ref()) && r.allows_method(m("head").as_ref()));
        assert!(!r.allows_method(m("POST").as_ref()) && !r.allows_method(None));
        assert!(r.allows_path("/v1/videos/1?x=/admin"));
        assert!(!r.allows_path("/admin?/v1/videos/1"));
        assert!(!r.allows_path(""));
        assert!(r.allows_referrer("https://www.example.com/x"));
        assert!(!r.allows_referrer(""));
        assert!(Method::parse("GE T").is_err());
    }

    #[test]
    fn methods_are_held_uppercase_up_to_twenty_letters() {
        let long = "a".repeat(20);
        let method = Method::parse(&long).unwrap();
        assert_eq!(method.as_str(), "A".repeat(20));
        assert!(Method::parse(&"a".repeat(21)).is_err());
        assert!(Method::parse("").is_err());
        assert!(Method::parse("GÉT").is_err());
        let patch = Method::parse("pAtCh").unwrap();
        assert_eq!(patch, Method::parse("PATCH").unwrap());
        assert_ne!(patch, Method::parse("PATCHX").unwrap());
        assert_eq!(format!("{patch:?}"), "\"PATCH\"");
        assert_eq!(serde_json::to_string(&patch).unwrap(), "\"PATCH\"");
        assert_eq!(
            serde_json::from_str::<Method>("\"get\"").unwrap().as_str(),
            "GET"
        );
        assert!(serde_json::from_str::<Method>("\"G T\"").is_err());
    }

    #[test]
    fn restrictions_round_trip_as_json() {
        let r = Restrictions {
            allowed_cidrs: vec![parse_cidr("10.0.0.0/8").unwrap()],
            allowed_methods: vec![Method::parse("GET").unwrap()],
            ..Restrictions::default()
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Restrictions>(&json).unwrap(), r);
    }
}

mod properties {
    use proptest::prelude::*;

    use super::super::*;

    /// The straightforward dynamic-programming matcher, as a reference for the linear one.
    fn reference(pattern: &str, text: &str) -> bool {
        let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
        let mut row = vec![false; text.len() + 1];
        row[0] = true;
        for (i, &c) in pattern.iter().enumerate() {
            let last = i + 1 == pattern.len();
            let mut next = vec![false; text.len() + 1];
            if c == b'*' {
                next[0] = row[0];
                for j in 1..=text.len() {
                    next[j] = row[j] || (next[j - 1] && (last || text[j - 1] != b'/'));
                }
            } else {
                for j in 1..=text.len() {
                    next[j] = row[j - 1] && text[j - 1] == c;
                }
            }
            row = next;
        }
        row[text.len()]
    }

    proptest! {
        #[test]
        fn linear_matching_agrees_with_the_reference(
            pattern in "[ab/*.]{1,12}",
            text in "[ab/.]{0,16}",
        ) {
            let p = Pattern::parse(&pattern).unwrap();
            prop_assert_eq!(p.matches(&text), reference(&pattern, &text), "{} vs {}", pattern, text);
        }

        #[test]
        fn normal_paths_are_normal(path in "/[a-z./%2eEfF5cC;]{0,24}") {
            if let Some(normal) = normalize_path(&path) {
                prop_assert!(normal.starts_with('/'));
                prop_assert!(!normal.contains("//"), "{normal}");
                for segment in normal.split('/') {
                    prop_assert!(segment != "." && segment != "..", "{normal}");
                }
                prop_assert_eq!(normalize_path(&normal), Some(normal.clone()), "idempotent");
            }
        }

        #[test]
        fn any_path_normalises_or_is_refused_without_panic(path in "\\PC{0,64}") {
            let _ = normalize_path(&path);
        }

        #[test]
        fn cidrs_round_trip(v4 in any::<[u8; 4]>(), v4_len in 0u8..=32, v6 in any::<[u16; 8]>(), v6_len in 0u8..=128) {
            let net = parse_cidr(&format!("{}/{v4_len}", std::net::Ipv4Addr::from(v4))).unwrap();
            prop_assert_eq!(parse_cidr(&net.to_string()).unwrap(), net);
            let addr = std::net::Ipv6Addr::from(v6);
            let net = parse_cidr(&format!("{addr}/{v6_len}")).unwrap();
            prop_assert_eq!(parse_cidr(&net.to_string()).unwrap(), net);
        }

        #[test]
        fn any_text_is_a_cidr_or_refused_without_panic(text in "\\PC{0,48}") {
            let _ = parse_cidr(&text);
            let _ = parse_client_ip(&text);
        }
    }
}
