//! The admin page in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, with fantoccini). Sign in, create a key from a preset, read it from the dialog,
//! verify it over gRPC, edit its scopes, revoke it; the secret must be gone from the page once
//! its dialog is closed. Screenshots of the list and of the create dialog are written to
//! `target/screenshots/` (and to `$KEYWARD_SCREENSHOTS_DIR` when set: the README's images).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use keyward::proto::{self, VerifyCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// chromedriver, stopped on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

impl Driver {
    async fn start() -> Driver {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("its address").port()
        };
        let child = Command::new(binary("KEYWARD_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts (.ci/run installs chromium-driver)");
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A headless Chromium session; retried until chromedriver listens.
    async fn session(&self, width: u32) -> Client {
        self.session_with(width, &[]).await
    }

    /// A session with more Chromium flags.
    async fn session_with(&self, width: u32, flags: &[&str]) -> Client {
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-gpu".into(),
            format!("--window-size={width},900"),
        ];
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        let mut options = serde_json::Map::new();
        options.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": binary("KEYWARD_TEST_CHROMIUM", "/usr/bin/chromium"),
                // --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
                "args": args,
            }),
        );
        let url = self.url.clone();
        eventually(Duration::from_secs(30), "a Chromium session", || {
            let options = options.clone();
            let url = url.clone();
            async move {
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(options)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await
    }
}

/// Runs `script` in the page and returns its value.
async fn js(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Waits until `script` returns a truthy value.
async fn until(client: &Client, what: &str, script: &str) {
    eventually(Duration::from_secs(15), what, move || async move {
        let value = js(client, script).await;
        let truthy = !matches!(value, Value::Null | Value::Bool(false))
            && value != json!("")
            && value != json!(0);
        truthy.then_some(())
    })
    .await
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn type_into(client: &Client, css: &str, text: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    save_screenshot(&png, name);
}

fn save_screenshot(png: &[u8], name: &str) {
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let mut dirs = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")];
    if let Ok(dir) = std::env::var("KEYWARD_SCREENSHOTS_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(name), png).expect("write the screenshot");
    }
}

/// Signs in with `key` and waits for the key list.
async fn sign_in(client: &Client, key: &str) {
    type_into(client, "#admin-key", key).await;
    click(client, "#sign-in-form button[type=submit]").await;
    until(
        client,
        "the key list",
        "return !document.getElementById('keys').hidden \
         && document.querySelectorAll('#key-rows tr').length >= 2",
    )
    .await;
}

/// Verifies `key` for a request needing `scope`.
async fn verify(server: &TestServer, key: &str, scope: &str) -> VerifyCode {
    code(&server.verify(key, &[scope]).await)
}

/// Every text and form value in the page, to look for a secret in.
const PAGE_TEXT: &str = "return document.documentElement.outerHTML + ' ' + \
    [...document.querySelectorAll('input, textarea')].map(e => e.value).join(' ') + ' ' + \
    document.body.innerText;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_manages_a_key_in_a_real_browser() {
    let server = TestServer::start(Backend::Sqlite).await;
    // The admin's key: manages account acme and may grant anything.
    let (admin, _) = server
        .create(proto::CreateKeyRequest {
            name: "Dashboard admin".into(),
            grant_all: true,
            ..key_request("acme", &["keys:write"])
        })
        .await;
    // A key made elsewhere, so the list has more than one row.
    let (reporting, _) = server
        .create(proto::CreateKeyRequest {
            name: "Reporting dashboard".into(),
            ..key_request("acme", &["analytics:read", "videos:read"])
        })
        .await;
    let driver = Driver::start().await;
    let client = driver.session(1280).await;
    let page = format!("http://{}/admin", server.http_addr);
    client.goto(&page).await.expect("open the admin page");

    // Every control has a label a screen reader can announce.
    let unlabelled = js(
        &client,
        "return [...document.querySelectorAll('input, select, button')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                         && !(e.textContent || '').trim())
            .map(e => e.id || e.outerHTML);",
    )
    .await;
    assert_eq!(unlabelled, json!([]), "controls without a label");

    // Sign in by pasting the key.
    sign_in(&client, &admin).await;
    let who = js(&client, "return document.getElementById('who').textContent").await;
    assert!(who.as_str().unwrap().contains("account acme"), "{who}");
    assert_eq!(
        js(&client, "return sessionStorage.getItem('keyward.adminKey')").await,
        json!(admin),
        "the key is kept in sessionStorage"
    );
    assert_eq!(
        js(&client, "return document.cookie").await,
        json!(""),
        "no cookies"
    );

    // Create a key from the Content agent preset.
    click(&client, "#create-open").await;
    until(
        &client,
        "the create dialog",
        "return document.getElementById('create-dialog').open",
    )
    .await;
    type_into(&client, "#create-name", "Content bot").await;
    client
        .find(Locator::Css("#create-expiry"))
        .await
        .expect("expiry")
        .select_by_value("30d")
        .await
        .expect("choose 30 days");
    // Custom shows the scope cards grouped by resource, with risk badges.
    click(&client, "#create-preset-custom").await;
    let badges = js(
        &client,
        "return [...document.querySelectorAll('#create-scopes .badge')].map(b => b.textContent)",
    )
    .await;
    for risk in ["Low risk", "Medium risk", "High risk"] {
        assert!(
            badges.as_array().unwrap().iter().any(|b| b == risk),
            "{risk} in {badges}"
        );
    }
    let groups = js(
        &client,
        "return [...document.querySelectorAll('#create-scopes .group h3')].map(h => h.textContent)",
    )
    .await;
    assert!(
        groups.as_array().unwrap().iter().any(|g| g == "videos"),
        "{groups}"
    );
    // Grant all shows its warning.
    click(&client, "#create-grant-all").await;
    assert_eq!(
        js(
            &client,
            "return document.getElementById('create-grant-all-warning').hidden"
        )
        .await,
        json!(false)
    );
    click(&client, "#create-grant-all").await;
    // Custom with nothing ticked is refused in the page.
    click(&client, "#create-form button[type=submit]").await;
    until(
        &client,
        "the at-least-one-scope error",
        "return document.getElementById('create-error').textContent.includes('at least one scope')",
    )
    .await;
    click(&client, "#create-scope-videos-read").await;
    click(&client, "#create-scope-analytics-read").await;
    js(
        &client,
        "document.querySelector('#create-scopes details').open = true; \
                 document.getElementById('create-dialog').scrollTop = 0; return true",
    )
    .await;
    screenshot(&client, "admin-create.png").await;
    click(&client, "#create-preset-content_agent").await;
    click(&client, "#create-form button[type=submit]").await;

    // The new key, shown once.
    until(&client, "the new key", "return document.getElementById('secret-dialog').open && document.getElementById('secret-value').textContent").await;
    let secret = js(
        &client,
        "return document.getElementById('secret-value').textContent",
    )
    .await;
    let secret = secret.as_str().expect("the key").to_owned();
    assert!(secret.starts_with("kw_live_"), "{secret}");
    assert_eq!(
        verify(&server, &secret, "videos:write").await,
        VerifyCode::Valid
    );
    click(&client, "#secret-copy").await;
    until(
        &client,
        "the copy to answer",
        "return document.getElementById('secret-copy-status').textContent",
    )
    .await;
    click(&client, "#secret-done").await;
    until(
        &client,
        "the dialog to close",
        "return !document.getElementById('secret-dialog').open",
    )
    .await;
    until(&client, "the new row", "return [...document.querySelectorAll('#key-rows td.name')].some(td => td.textContent === 'Content bot')").await;
    let text = js(&client, PAGE_TEXT).await;
    assert!(
        !text.as_str().unwrap().contains(&secret),
        "the secret is gone from the page"
    );
    let row = js(&client, "return [...document.querySelectorAll('#key-rows tr')].find(tr => tr.querySelector('td.name').textContent === 'Content bot').innerText").await;
    let row = row.as_str().unwrap();
    assert!(row.contains(&secret[..16]), "the prefix is listed: {row}");
    assert!(row.contains("Never"), "never used: {row}");
    assert!(
        row.contains("in 29 days") || row.contains("in 30 days"),
        "expires in 30 days: {row}"
    );
    screenshot(&client, "admin-list.png").await;

    // Edit: take videos:write away; the next verify refuses it.
    click(&client, "button[aria-label='Edit scopes of Content bot']").await;
    until(
        &client,
        "the edit dialog",
        "return document.getElementById('edit-dialog').open",
    )
    .await;
    assert_eq!(
        js(
            &client,
            "return document.getElementById('edit-scope-videos-write').checked"
        )
        .await,
        json!(true)
    );
    click(&client, "#edit-scope-videos-write").await;
    click(&client, "#edit-form button[type=submit]").await;
    until(
        &client,
        "the edit to land",
        "return !document.getElementById('edit-dialog').open",
    )
    .await;
    assert_eq!(
        verify(&server, &secret, "videos:write").await,
        VerifyCode::InsufficientScope
    );
    assert_eq!(
        verify(&server, &secret, "videos:read").await,
        VerifyCode::Valid
    );

    // Rotate another key with a 24-hour grace: the new secret is shown once, both work.
    click(&client, "button[aria-label='Rotate Reporting dashboard']").await;
    until(
        &client,
        "the rotate dialog",
        "return document.getElementById('rotate-dialog').open",
    )
    .await;
    client
        .find(Locator::Css("#rotate-grace"))
        .await
        .expect("grace")
        .select_by_value("24h")
        .await
        .expect("choose 24 hours");
    click(&client, "#rotate-form button[type=submit]").await;
    until(&client, "the replacement key", "return document.getElementById('secret-dialog').open && document.getElementById('secret-value').textContent").await;
    let replacement = js(
        &client,
        "return document.getElementById('secret-value').textContent",
    )
    .await;
    let replacement = replacement.as_str().expect("the key").to_owned();
    click(&client, "#secret-done").await;
    until(
        &client,
        "the dialog to close",
        "return !document.getElementById('secret-dialog').open",
    )
    .await;
    assert_eq!(
        verify(&server, &replacement, "videos:read").await,
        VerifyCode::Valid
    );
    assert_eq!(
        verify(&server, &reporting, "videos:read").await,
        VerifyCode::Valid,
        "the grace period"
    );
    let text = js(&client, PAGE_TEXT).await;
    assert!(!text.as_str().unwrap().contains(&replacement));

    // Revoke, confirmed in a dialog.
    click(&client, "button[aria-label='Revoke Content bot']").await;
    until(
        &client,
        "the revoke dialog",
        "return document.getElementById('revoke-dialog').open",
    )
    .await;
    click(&client, "#revoke-form button[type=submit]").await;
    until(&client, "the row to go", "return !document.getElementById('revoke-dialog').open && ![...document.querySelectorAll('#key-rows td.name')].some(td => td.textContent === 'Content bot')").await;
    assert_eq!(
        verify(&server, &secret, "videos:read").await,
        VerifyCode::Revoked
    );

    // The filter of keys unused for 30 days shows the keys never used.
    click(&client, "#unused-filter").await;
    until(
        &client,
        "the filtered list",
        "return document.getElementById('key-caption').textContent.includes('unused for 30 days')",
    )
    .await;
    client.close().await.expect("close the session");

    // Readable at 375 px: nothing wider than the screen.
    let client = driver.session(375).await;
    client.goto(&page).await.expect("open the admin page");
    sign_in(&client, &admin).await;
    let overflow = js(
        &client,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    )
    .await;
    assert_eq!(overflow, json!(0), "no horizontal scrolling at 375 px");
    client.close().await.expect("close the session");
    server.stop().await;
}

/// The usage chart: after verifications, the account's chart and a key's chart are drawn
/// (bars stacked by outcome) and their totals match the JSON API's; light and dark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sees_usage_charted() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.usage_flush_interval = Duration::from_secs(3_600)
    })
    .await;
    let (admin, _) = server
        .create(proto::CreateKeyRequest {
            name: "Dashboard admin".into(),
            grant_all: true,
            ..key_request("acme", &["keys:write"])
        })
        .await;
    let (uploader, _) = server
        .create(proto::CreateKeyRequest {
            name: "Uploader".into(),
            ..key_request("acme", &["videos:read"])
        })
        .await;
    let (reporting, _) = server
        .create(proto::CreateKeyRequest {
            name: "Reporting".into(),
            ..key_request("acme", &["videos:read"])
        })
        .await;
    for _ in 0..5 {
        assert_eq!(
            verify(&server, &uploader, "videos:read").await,
            VerifyCode::Valid
        );
    }
    for _ in 0..2 {
        assert_eq!(
            verify(&server, &uploader, "videos:write").await,
            VerifyCode::InsufficientScope
        );
    }
    for _ in 0..3 {
        assert_eq!(
            verify(&server, &reporting, "videos:read").await,
            VerifyCode::Valid
        );
    }
    server.service.flush_usage().await.unwrap();
    let api = http(
        server.http_addr,
        "GET",
        "/v1/usage?accountId=acme&startTime=24h",
        &[("authorization", &format!("Bearer {admin}"))],
    )
    .await
    .json();
    let api_total = api["data"]["series"][0]["total"].as_u64().unwrap();
    assert_eq!(api_total, 10);

    let driver = Driver::start().await;
    let page = format!("http://{}/admin", server.http_addr);
    for (flags, name) in [
        (&[][..], "admin-usage.png"),
        (&["--force-dark-mode"][..], "admin-usage-dark.png"),
    ] {
        let client = driver.session_with(1280, flags).await;
        client.goto(&page).await.expect("open the admin page");
        sign_in(&client, &admin).await;
        until(
            &client,
            "the account's chart",
            "return document.getElementById('usage-chart').dataset.total === '10'",
        )
        .await;
        // The bars add up to the API's total; the table says the same.
        let drawn = js(
            &client,
            "return [...document.querySelectorAll('#usage-chart g')]
                .reduce((sum, g) => sum + Number(g.dataset.total), 0)",
        )
        .await;
        assert_eq!(drawn, json!(api_total));
        assert_eq!(
            js(
                &client,
                "return document.getElementById('usage-total').textContent"
            )
            .await,
            json!("10")
        );
        let codes = js(
            &client,
            "return [...new Set([...document.querySelectorAll('#usage-chart rect')]
                .map(r => r.dataset.code))].sort()",
        )
        .await;
        assert_eq!(codes, json!(["INSUFFICIENT_SCOPE", "VALID"]));
        // Bars have a height and a colour of their own per kind of outcome.
        let fills = js(
            &client,
            "return [...document.querySelectorAll('#usage-chart rect')]
                .map(r => [r.dataset.code, getComputedStyle(r).fill, r.getBBox().height > 0])",
        )
        .await;
        let fills = fills.as_array().unwrap();
        assert!(fills.iter().all(|f| f[2] == json!(true)), "{fills:?}");
        let colour = |code: &str| {
            fills
                .iter()
                .find(|f| f[0] == json!(code))
                .map(|f| f[1].clone())
        };
        assert_ne!(colour("VALID"), colour("INSUFFICIENT_SCOPE"));
        let dark = js(
            &client,
            "return matchMedia('(prefers-color-scheme: dark)').matches",
        )
        .await;
        assert_eq!(
            dark,
            json!(!flags.is_empty()),
            "the colour scheme under test"
        );
        // The picture shows the chart alone (the key list above it set aside for it).
        js(
            &client,
            "document.getElementById('keys').hidden = true; window.painted = false; \
             requestAnimationFrame(() => requestAnimationFrame(() => { window.painted = true; })); \
             return true",
        )
        .await;
        until(&client, "a frame without the list", "return window.painted").await;
        screenshot(&client, name).await;
        js(
            &client,
            "document.getElementById('keys').hidden = false; return true",
        )
        .await;

        // One key's chart.
        click(&client, "button[aria-label='Usage of Uploader']").await;
        until(
            &client,
            "the key's chart",
            "return document.getElementById('usage-chart').dataset.total === '7'",
        )
        .await;
        let subject = js(
            &client,
            "return document.getElementById('usage-subject').textContent",
        )
        .await;
        assert!(subject.as_str().unwrap().contains("Uploader"), "{subject}");
        let rows = js(
            &client,
            "return [...document.querySelectorAll('#usage-rows tr')].map(tr => tr.innerText.replace(/\\s+/g, ' ').trim())",
        )
        .await;
        assert_eq!(rows, json!(["VALID 5", "INSUFFICIENT_SCOPE 2"]));
        client.close().await.expect("close the session");
    }
    server.stop().await;
}

/// A product's customer in the portal: the product's backend makes a one-time link, the
/// browser opens it (the page is branded, offers only what the session may do), creates a key
/// from a preset (it verifies), edits its scopes (seen at once), revokes it (refused next);
/// the link does not open twice, a call without the CSRF header and one on another account's
/// key are refused, and an ended session says so. No secret stays in storage or the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_manages_keys_in_the_portal() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, globex_key) = server.create(key_request("globex", &["videos:read"])).await;
    let root = format!("Bearer {}", server.root_key);
    let created = create_portal_session(
        &server,
        &server.root_key,
        &json!({
            "accountId": "acme",
            "permissions": {"presets": ["content_agent"], "scopes": ["videos:read", "analytics:read"],
                            "maxTtl": "90d", "revoke": true, "usage": true},
            "displayName": "Ada Lovelace",
            "returnUrl": "https://app.acme.example/settings",
            "branding": {"productName": "Acme Video", "accentColor": "#7b2cbf"}
        }),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let created = created.json();
    let link = format!("http://{}{}", server.http_addr, portal_link_path(&created));
    let session_id = created["data"]["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let driver = Driver::start().await;
    let client = driver.session(1280).await;
    client.goto(&link).await.expect("open the link");
    until(
        &client,
        "the portal's key list",
        "return location.pathname === '/portal' && !document.getElementById('keys').hidden",
    )
    .await;
    // Branded, signed in as the product's user, nothing of the admin's sign-in.
    let header = js(
        &client,
        "return [document.getElementById('page-title').textContent, \
                 document.getElementById('who').textContent, \
                 document.getElementById('back-link').href, \
                 document.getElementById('sign-in').offsetParent === null, \
                 getComputedStyle(document.documentElement).getPropertyValue('--accent').trim()]",
    )
    .await;
    assert_eq!(
        header,
        json!([
            "Acme Video API keys",
            "Signed in as Ada Lovelace",
            "https://app.acme.example/settings",
            true,
            "#7b2cbf"
        ])
    );
    // Every visible control has a label a screen reader can announce.
    let unlabelled = js(
        &client,
        "return [...document.querySelectorAll('input, select, button, a')]
            .filter(e => e.offsetParent !== null)
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                         && !(e.textContent || '').trim())
            .map(e => e.id || e.outerHTML);",
    )
    .await;
    assert_eq!(unlabelled, json!([]), "controls without a label");
    // The cookie is HttpOnly: the page's script cannot read it; nothing is stored.
    assert_eq!(
        js(
            &client,
            "return [document.cookie, localStorage.length, sessionStorage.length]"
        )
        .await,
        json!(["", 0, 0])
    );

    // Create from the preset, with the expiries the session allows.
    click(&client, "#create-open").await;
    until(
        &client,
        "the create dialog",
        "return document.getElementById('create-dialog').open",
    )
    .await;
    let offered = js(
        &client,
        "return [[...document.querySelectorAll('input[name=preset]')].map(i => i.value), \
                 [...document.getElementById('create-expiry').options].map(o => o.value), \
                 document.getElementById('create-grant-all').closest('label').hidden]",
    )
    .await;
    assert_eq!(
        offered,
        json!([["content_agent", "custom"], ["30d", "60d", "90d"], true])
    );
    type_into(&client, "#create-name", "Upload bot").await;
    click(&client, "#create-preset-content_agent").await;
    screenshot(&client, "portal-create.png").await;
    click(&client, "#create-form button[type=submit]").await;
    until(&client, "the new key", "return document.getElementById('secret-dialog').open && document.getElementById('secret-value').textContent").await;
    let secret = js(
        &client,
        "return document.getElementById('secret-value').textContent",
    )
    .await
    .as_str()
    .unwrap()
    .to_owned();
    assert_eq!(
        verify(&server, &secret, "videos:write").await,
        VerifyCode::Valid
    );
    click(&client, "#secret-copy").await;
    until(
        &client,
        "the copy to answer",
        "return document.getElementById('secret-copy-status').textContent",
    )
    .await;
    click(&client, "#secret-done").await;
    until(&client, "the new row", "return [...document.querySelectorAll('#key-rows td.name')].some(td => td.textContent === 'Upload bot')").await;
    let text = js(&client, PAGE_TEXT).await;
    assert!(
        !text.as_str().unwrap().contains(&secret),
        "the secret is gone"
    );
    // Rotation was not given: no Rotate button; Revoke and Usage were.
    let actions = js(
        &client,
        "return [...document.querySelectorAll('#key-rows tr')][0].querySelector('.row-actions').innerText",
    )
    .await;
    let actions = actions.as_str().unwrap();
    assert!(
        !actions.contains("Rotate") && actions.contains("Revoke") && actions.contains("Usage"),
        "{actions}"
    );
    screenshot(&client, "portal-list.png").await;

    // Edit: the scope cards are the session's; take videos:write away.
    click(&client, "button[aria-label='Edit scopes of Upload bot']").await;
    until(
        &client,
        "the edit dialog",
        "return document.getElementById('edit-dialog').open",
    )
    .await;
    let cards = js(
        &client,
        "return [...document.querySelectorAll('#edit-scopes input[name=scope]')].map(i => i.value).sort()",
    )
    .await;
    assert_eq!(
        cards,
        json!([
            "analytics:read",
            "collections:read",
            "collections:write",
            "generation:content",
            "generation:image",
            "videos:read",
            "videos:write"
        ])
    );
    click(&client, "#edit-scope-videos-write").await;
    click(&client, "#edit-form button[type=submit]").await;
    until(
        &client,
        "the edit to land",
        "return !document.getElementById('edit-dialog').open",
    )
    .await;
    assert_eq!(
        verify(&server, &secret, "videos:write").await,
        VerifyCode::InsufficientScope
    );

    // Refused from the page's own origin: a POST without the CSRF header, and the session's
    // token used on another account's key.
    let refused = js(
        &client,
        &format!(
            "return (async () => {{ \
               const csrf = (await (await fetch('/portal/session')).json()).csrfToken; \
               const bare = await fetch('/v1/api-keys', {{method: 'POST', \
                 headers: {{'Content-Type': 'application/json'}}, \
                 body: JSON.stringify({{name: 'x', preset: 'content_agent', expiresIn: '30d'}})}}); \
               const other = await fetch('/v1/api-keys/{}', {{method: 'DELETE', \
                 headers: {{'X-CSRF-Token': csrf}}}}); \
               return [bare.status, other.status]; }})()",
            globex_key.id
        ),
    )
    .await;
    assert_eq!(refused, json!([403, 403]));

    // Revoke, confirmed: the next Verify is refused.
    click(&client, "button[aria-label='Revoke Upload bot']").await;
    until(
        &client,
        "the revoke dialog",
        "return document.getElementById('revoke-dialog').open",
    )
    .await;
    click(&client, "#revoke-form button[type=submit]").await;
    until(
        &client,
        "the revocation to land",
        "return !document.getElementById('revoke-dialog').open",
    )
    .await;
    assert_eq!(
        verify(&server, &secret, "videos:read").await,
        VerifyCode::Revoked
    );

    // The link does not open twice; a new one, on a phone-width screen, fits the screen.
    let phone = driver.session(375).await;
    phone.goto(&link).await.expect("open the used link");
    until(
        &phone,
        "the refusal page",
        "return document.body && document.body.innerText.includes('This link does not work')",
    )
    .await;
    let again = simple_portal_link(&server).await;
    phone
        .goto(&format!("http://{}{again}", server.http_addr))
        .await
        .expect("open a new link");
    until(
        &phone,
        "the phone's key list",
        "return !document.getElementById('keys').hidden \
                && document.getElementById('key-caption').textContent.includes('acme')",
    )
    .await;
    assert_eq!(
        js(
            &phone,
            "return document.documentElement.scrollWidth <= window.innerWidth"
        )
        .await,
        json!(true),
        "nothing wider than a phone's screen"
    );
    phone.close().await.ok();

    // The operator ends the session: the page, reloaded, says so.
    let ended = http(
        server.http_addr,
        "DELETE",
        &format!("/v1/portal-sessions/{session_id}?accountId=acme"),
        &[("authorization", &root)],
    )
    .await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    client.refresh().await.expect("reload");
    until(
        &client,
        "the ended-session notice",
        "return !document.getElementById('portal-ended').hidden \
                && document.getElementById('keys').hidden",
    )
    .await;
    client.close().await.ok();
    server.stop().await;
}

/// A portal session past its lifetime: the page, reloaded, says it ended and shows no keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_portal_session_says_so() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.portal_session_lifetime = Duration::from_secs(4);
    })
    .await;
    // The browser first (it may take a while to start), then the link, opened at once.
    let driver = Driver::start().await;
    let client = driver.session(1280).await;
    let link = simple_portal_link(&server).await;
    client
        .goto(&format!("http://{}{link}", server.http_addr))
        .await
        .expect("open the link");
    assert_eq!(
        client.current_url().await.unwrap().path(),
        "/portal",
        "the link opened"
    );
    eventually(Duration::from_secs(15), "the session to expire", || {
        let client = client.clone();
        async move {
            client.refresh().await.ok()?;
            // The reloaded page settles one way or the other.
            until(
                &client,
                "the reloaded page to settle",
                "return !document.getElementById('keys').hidden \
                        || !document.getElementById('portal-ended').hidden",
            )
            .await;
            let ended = js(
                &client,
                "return !document.getElementById('portal-ended').hidden \
                        && document.getElementById('keys').hidden",
            )
            .await;
            (ended == json!(true)).then_some(())
        }
    })
    .await;
    client.close().await.ok();
    server.stop().await;
}
