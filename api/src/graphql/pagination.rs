//! Pagination of connections: page sizes, opaque cursors and `PageInfo`.

use async_graphql::SimpleObject;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

pub const DEFAULT_PAGE: i32 = 50;
pub const MAX_PAGE: i32 = 100;

/// `first` clamped to 1..=100.
pub fn page_size(first: Option<i32>) -> u64 {
    u64::try_from(first.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)).unwrap_or(50)
}

/// Opaque cursors: URL-safe base64 of a small text, so clients cannot rely on their shape.
pub fn encode_cursor(raw: &str) -> String {
    URL_SAFE_NO_PAD.encode(raw)
}

pub fn decode_cursor(field: &str, cursor: &str) -> ApiResult<String> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| ApiError::validation(field, "this cursor did not come from this API"))
}

/// A cursor over lists ordered by id.
pub fn id_cursor(id: Uuid) -> String {
    encode_cursor(&id.to_string())
}

pub fn parse_id_cursor(field: &str, cursor: Option<&str>) -> ApiResult<Option<Uuid>> {
    cursor
        .map(|cursor| {
            let raw = decode_cursor(field, cursor)?;
            Uuid::parse_str(&raw)
                .map_err(|_| ApiError::validation(field, "this cursor did not come from this API"))
        })
        .transpose()
}

/// A page of a list ordered by id, fetched with one row more than `size`: that row only says
/// there is a next page. Returns each row with its cursor, and the page info.
pub fn id_page<T>(
    mut rows: Vec<T>,
    size: u64,
    started_after: bool,
    id: impl Fn(&T) -> Uuid,
) -> (Vec<(String, T)>, PageInfo) {
    let has_next_page = rows.len() as u64 > size;
    rows.truncate(usize::try_from(size).unwrap_or(usize::MAX));
    let rows: Vec<(String, T)> = rows
        .into_iter()
        .map(|row| (id_cursor(id(&row)), row))
        .collect();
    let page_info = PageInfo::of(
        rows.iter().map(|(cursor, _)| cursor),
        has_next_page,
        started_after,
    );
    (rows, page_info)
}

/// Where a page of a connection stands.
#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

impl PageInfo {
    /// A page whose edges have these cursors; it has a previous page when it started `after` one.
    pub fn of<'a>(
        mut cursors: impl DoubleEndedIterator<Item = &'a String> + Clone,
        has_next_page: bool,
        started_after: bool,
    ) -> Self {
        Self {
            has_next_page,
            has_previous_page: started_after,
            start_cursor: cursors.clone().next().cloned(),
            end_cursor: cursors.next_back().cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extra_row_only_says_there_is_a_next_page() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let (full, info) = id_page(ids.clone(), 2, true, |id| *id);
        assert_eq!(full.len(), 2);
        assert!(info.has_next_page && info.has_previous_page);
        assert_eq!(info.end_cursor.as_deref(), Some(id_cursor(ids[1]).as_str()));
        assert_eq!(
            parse_id_cursor("after", info.end_cursor.as_deref()).ok(),
            Some(Some(ids[1]))
        );

        let (last, info) = id_page(ids[..2].to_vec(), 2, false, |id| *id);
        assert_eq!(last.len(), 2);
        assert!(!info.has_next_page && !info.has_previous_page);
    }
}
