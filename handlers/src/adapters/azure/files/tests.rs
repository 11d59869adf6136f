//! Unit tests of `adapters::azure::files`.

use super::*;

#[test]
fn parses_a_listing_with_entities_and_encoded_names() {
    let xml = br#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="https://a.file.core.windows.net/" ShareName="s" DirectoryPath="d">
  <Entries>
<File><Name>a &amp; b.txt</Name><Properties><Content-Length>12</Content-Length></Properties></File>
<Directory><Name Encoded="true">x%20y</Name><Properties/></Directory>
  </Entries>
  <NextMarker />
</EnumerationResults>"#;
    let n = parse(xml).unwrap();
    let entries = &n.child("Entries").unwrap().children;
    assert_eq!(entries[0].child("Name").unwrap().entry_name(), "a & b.txt");
    assert_eq!(
        entries[0]
            .text_at(&["Properties", "Content-Length"])
            .as_deref(),
        Some("12")
    );
    assert_eq!(entries[1].child("Name").unwrap().entry_name(), "x y");
    assert_eq!(n.text_at(&["NextMarker"]).as_deref(), Some(""));
    assert!(parse(b"<a><b></a>").is_err());
    assert!(parse(b"").is_err());
    assert!(parse(b"\xff\xfe").is_err());
}

#[test]
fn urls_and_errors_hide_user_paths() {
    let u = Url::parse(
        "https://a.file.core.windows.net/code-1/Users/alice/x%20y.ipynb?restype=directory",
    )
    .unwrap();
    let shown = show_url(&u);
    assert!(
        !shown.contains("alice") && shown.contains("code-1/Users/"),
        "{shown}"
    );
    assert_eq!(
        redact_text("GET https://h/s/Users/alice/n.ipynb: reset"),
        "GET https://h/s/Users/…/…: reset"
    );
}
