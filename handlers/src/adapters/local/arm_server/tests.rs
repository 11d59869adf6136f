//! Unit tests of `adapters::local::arm_server`.

use super::*;

#[test]
fn decoding_and_links() {
    assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
    assert_eq!(percent_decode("100%"), "100%");
    assert_eq!(percent_decode("%zz"), "%zz");
    let q = vec![
        ("api-version".to_string(), "2024-10-01".to_string()),
        ("$skipToken".to_string(), "old".to_string()),
    ];
    assert_eq!(
        next_link("http://h:1", "/x", &q, "jobs/a b.json"),
        "http://h:1/x?api-version=2024-10-01&%24skipToken=jobs%2Fa+b.json"
    );
}
