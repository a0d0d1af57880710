//! `GET /messages/conversations/all` a page at a time: the brief's array, the next page in
//! the `Link` (RFC 8288) and `X-Next-Cursor` headers, the cursor rule of `GET
//! /conversations`; every conversation once, in order, whatever their number; each page read
//! by seeking to its cursor; bad cursors and limits refused.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, TestApp, TestUser};
use crate::on_both_backends;

const ROUTE: &str = "/messages/conversations/all";

/// One page: its entries, and the next page's path and cursor from the headers.
struct Page {
    entries: Vec<Value>,
    next: Option<String>,
    cursor: Option<String>,
}

impl TestApp {
    async fn list_page(&self, path: &str, user: &TestUser) -> Page {
        let resp = self.get(path, &user.token).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let (link, cursor) = (header("link"), header("x-next-cursor"));
        let next = link.map(|l| {
            let target = l
                .strip_prefix('<')
                .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                .unwrap_or_else(|| panic!("not an RFC 8288 next link: {l}"));
            target.to_string()
        });
        assert_eq!(
            next.is_some(),
            cursor.is_some(),
            "Link and X-Next-Cursor go together"
        );
        let entries = resp
            .json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .clone();
        Page {
            entries,
            next,
            cursor,
        }
    }

    /// Every page from `first`, following the `Link` headers: the page sizes and the
    /// conversation ids, in order.
    async fn follow(&self, first: &str, user: &TestUser) -> (Vec<usize>, Vec<String>) {
        let (mut sizes, mut ids) = (Vec::new(), Vec::new());
        let mut path = Some(first.to_string());
        while let Some(p) = path {
            let page = self.list_page(&p, user).await;
            if let Some(cursor) = &page.cursor {
                assert_eq!(
                    page.entries.last().unwrap()["conversation"]["id"],
                    cursor.as_str(),
                    "the cursor is the page's last conversation"
                );
                assert!(page
                    .next
                    .as_ref()
                    .unwrap()
                    .contains(&format!("before={cursor}")));
            }
            sizes.push(page.entries.len());
            ids.extend(
                page.entries
                    .iter()
                    .map(|e| e["conversation"]["id"].as_str().unwrap().to_string()),
            );
            path = page.next;
            assert!(sizes.len() < 1000, "the cursor does not advance");
        }
        (sizes, ids)
    }

    /// A group with `by` alone in it, by id.
    async fn lone_group(&self, by: &TestUser, title: &str) -> String {
        self.group_ok(by, title, &[]).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn ids_desc(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids.reverse();
    ids
}

on_both_backends! {
    async fn following_the_cursor_gives_every_conversation_once_in_order(app) {
        let (ada, bob, carl, dan) = (app.register("Ada").await, app.register("Bob").await,
            app.register("Carl").await, app.register("Dan").await);
        // Seven conversations: the ones with messages in the order of their last message,
        // then two groups without any (by id, newest first).
        app.send_ok(&ada, &bob, "to bob").await;
        let g1 = app.lone_group(&ada, "G1").await;
        let g2 = app.lone_group(&ada, "G2").await;
        assert_eq!(app.post(&ada, &g1, "in g1").await.status(), StatusCode::CREATED);
        app.send_ok(&carl, &ada, "from carl").await;
        let g3 = app.lone_group(&ada, "G3").await;
        assert_eq!(app.post(&ada, &g3, "in g3").await.status(), StatusCode::CREATED);
        let g4 = app.lone_group(&ada, "G4").await;
        app.send_ok(&ada, &dan, "to dan").await;
        let by_person = app.get_ok("/conversations?limit=200", &ada).await["conversations"].as_array().unwrap()
            .iter().map(|c| c["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(by_person.len(), 7);
        let all = app.list_page(&format!("{ROUTE}?limit=500"), &ada).await.entries;
        let direct = |other: &TestUser| {
            all.iter()
                .find(|e| e["otherUser"]["id"] == other.id.as_str())
                .map(|e| e["conversation"]["id"].as_str().unwrap().to_string())
                .unwrap()
        };
        let mut expected = vec![direct(&dan), g3.clone(), direct(&carl), g1.clone(), direct(&bob)];
        expected.extend(ids_desc(vec![g2.clone(), g4.clone()]));

        let (sizes, ids) = app.follow(&format!("{ROUTE}?limit=2"), &ada).await;
        assert_eq!(sizes, [2, 2, 2, 1], "every page holds `limit` entries but the last");
        assert_eq!(ids, expected, "every conversation once, most recent first");
        assert_eq!(ids, by_person, "the same order as GET /conversations");

        // The brief's shape on every page: otherUser for direct ones, null for groups.
        let first = app.list_page(&format!("{ROUTE}?limit=2"), &ada).await;
        assert_eq!(first.entries[0]["otherUser"]["name"], "Dan");
        assert_eq!(first.entries[0]["lastMessage"]["content"], "to dan");
        assert_eq!(first.entries[1]["otherUser"], Value::Null);
        assert_eq!(first.entries[1]["conversation"]["title"], "G3");
        assert_eq!(first.next.as_deref(), Some(format!("{ROUTE}?before={g3}&limit=2").as_str()));

        // A page ends where the list ends: no link on an exact fit either.
        let exact = app.list_page(&format!("{ROUTE}?limit=7"), &ada).await;
        assert_eq!((exact.entries.len(), exact.next), (7, None));
    }

    async fn the_default_page_is_200_and_the_rest_follows(app) {
        let ada = app.register("Ada").await;
        let mut created = Vec::new();
        for i in 0..205 {
            created.push(app.lone_group(&ada, &format!("G{i}")).await);
        }
        let expected = ids_desc(created);

        let first = app.list_page(ROUTE, &ada).await;
        assert_eq!(first.entries.len(), 200, "the default page");
        assert_eq!(first.next.as_deref(), Some(format!("{ROUTE}?before={}&limit=200", expected[199]).as_str()));
        let (sizes, ids) = app.follow(ROUTE, &ada).await;
        assert_eq!(sizes, [200, 5]);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 205, "no entry twice");
        assert_eq!(ids, expected);

        let (sizes, ids) = app.follow(&format!("{ROUTE}?limit=500"), &ada).await;
        assert_eq!(sizes, [205], "up to 500 in one page");
        assert_eq!(ids, expected);
    }

    async fn a_bad_cursor_or_limit_is_a_400(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        app.send_ok(&ada, &bob, "hi").await;
        let bobs_group = app.lone_group(&bob, "Bob's").await;
        let cases = [
            ("limit=0".to_string(), "limit"),
            ("limit=501".to_string(), "limit"),
            ("limit=-1".to_string(), "limit"),
            ("limit=ten".to_string(), "limit"),
            ("before=not-a-uuid".to_string(), "before"),
            (format!("before={}", uuid::Uuid::new_v4()), "before"),
            (format!("before={bobs_group}"), "before"),
        ];
        for (query, why) in cases {
            let r = app.get(&format!("{ROUTE}?{query}"), &ada.token).await;
            let msg = assert_error(r, StatusCode::BAD_REQUEST).await;
            assert!(msg.contains(why), "{query}: {msg}");
        }
        // Nothing changed: the list is still there.
        assert_eq!(app.get_ok(ROUTE, &ada).await.as_array().unwrap().len(), 1);
    }

    async fn a_page_seeks_to_its_cursor_in_the_index(app) {
        // The plan of the page query: the cursor bounds the index range (the rows before it
        // are never read), on both engines.
        use sqlx::{Connection, Row};
        sqlx::any::install_default_drivers();
        let url = app.database_url().to_string();
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        let sql = nexus::store::conversations::LISTED_CONVERSATIONS;
        let plan: Vec<String> = if url.starts_with("sqlite") {
            sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .bind("u").bind(5_i64).bind("c").bind(10_i64)
                .fetch_all(&mut conn).await.unwrap()
                .iter().map(|r| r.get::<String, _>(3)).collect()
        } else {
            // Whatever the table's size, the planner must be able to seek.
            sqlx::query("SET enable_seqscan = off").execute(&mut conn).await.unwrap();
            sqlx::query("SET enable_bitmapscan = off").execute(&mut conn).await.unwrap();
            sqlx::query(&format!("EXPLAIN {sql}"))
                .bind("u").bind(5_i64).bind("c").bind(10_i64)
                .fetch_all(&mut conn).await.unwrap()
                .iter().map(|r| r.get::<String, _>(0)).collect()
        };
        let plan = plan.join("\n");
        let seeks = plan.contains("(last_pos,conversation_id)<(?,?)")
            || plan.lines().any(|l| l.contains("Index Cond") && l.contains("ROW(last_pos, conversation_id) <"));
        assert!(seeks, "the cursor does not bound the index range:\n{plan}");
        assert!(!plan.contains("TEMP B-TREE") && !plan.contains("Sort"), "a page sorts the user's conversations:\n{plan}");
    }
}

/// The document says what the route takes and answers: the two query parameters, and the
/// two headers of the next page (schemathesis checks answers against it).
#[tokio::test]
async fn the_openapi_document_describes_the_pages() {
    let Some(app) = crate::helpers::spawn_app_with(crate::helpers::Backend::Sqlite, |_| {}).await
    else {
        return;
    };
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let op = &doc["paths"][ROUTE]["get"];
    let params: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["before", "limit"]);
    let limit = &op["parameters"][1]["schema"];
    assert_eq!(
        (limit["minimum"].as_i64(), limit["maximum"].as_i64()),
        (Some(1), Some(500)),
        "{limit}"
    );
    let headers = &op["responses"]["200"]["headers"];
    assert!(
        headers["Link"].is_object() && headers["X-Next-Cursor"].is_object(),
        "{headers}"
    );
    assert!(op["responses"]["400"].is_object());
}
