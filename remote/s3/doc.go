// Package s3 is the remote.Store for Amazon S3 and servers that speak its
// API (MinIO, Ceph, R2, ...), through aws-sdk-go-v2. It is a package of its
// own so that only programs that want S3 link the SDK: importing it
// registers the s3:// scheme with remote.Open, and a program that imports
// remote or the engine without it stays free of the SDK.
//
//	s3://bucket[/prefix][?path_style=true|false]
//
// The URL names only the bucket and a key prefix, so that several stores
// can share a bucket. Credentials, region and endpoint come from the
// standard AWS configuration chain (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, profiles, instance
// roles), never from the URL, where they would end up in logs and shell
// history; a URL with user info is refused. With a custom endpoint, as for
// MinIO, requests use path-style addressing unless path_style=false says
// otherwise.
//
// Create is a conditional write (PutObject with If-None-Match: *), so two
// writers racing for a key get one success and one remote.ErrExists, with
// no lock service; AWS S3 and current MinIO support it. Each request is
// tried up to Options.MaxAttempts times (default 5) with jittered
// exponential backoff (a first wait of 100 to 200ms, doubling, capped at 5s)
// on network errors, 5xx responses, throttling and conditional write
// conflicts, never on other 4xx responses, which retrying cannot fix. An
// attempt whose context has no deadline gets Options.Timeout, so that a
// server that stops answering cannot hang a call.
//
// A Store is safe for concurrent use. The conformance suite in
// remote/remotetest runs against it on a real MinIO server.
//
// Example:
//
//	import (
//		"github.com/cambiumdb/cambium/remote"
//		_ "github.com/cambiumdb/cambium/remote/s3" // registers s3://
//	)
//
//	store, err := remote.Open(ctx, "s3://my-bucket/cambium")
//	if err != nil { ... }
//	defer store.Close()
//
// or, with options a URL does not carry:
//
//	store, err := s3.New(ctx, s3.Options{Bucket: "my-bucket", Prefix: "cambium/", MaxAttempts: 10})
package s3
