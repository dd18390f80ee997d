"""The W&B GraphQL API: the HTTP transport, the query documents and the `HistorySource` built on them."""
