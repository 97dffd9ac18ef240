// Package remote is object storage behind one small interface, Store:
// whole and ranged reads, writes, an atomic create-if-absent, paged listing
// and deletes, with a written contract per method.
//
// Implementations, chosen by URL with Open:
//
//	mem://NAME          in-process; one shared store per NAME
//	file:///abs/path    a local directory: atomic creates (link), readers never
//	                    see partial objects (write, fsync, rename), keys cannot
//	                    leave the directory
//	s3://bucket/prefix  Amazon S3 or any S3-compatible store, through
//	                    aws-sdk-go-v2; credentials, region and endpoint come from
//	                    the standard AWS chain (AWS_ACCESS_KEY_ID, AWS_REGION,
//	                    AWS_ENDPOINT_URL, profiles), never from the URL
//
// Wrappers that take any Store and are Stores themselves:
//
//	CountingStore  counts requests and payload bytes by kind of request
//	LatencyStore   adds first-byte latency and per-stream bandwidth, to
//	               emulate an object store in benchmarks
//	FaultStore     fails, delays, truncates or corrupts requests on a
//	               deterministic Schedule, for tests
//
// The package knows keys and bytes, nothing of segments or volumes, and
// imports nothing else of Cambium. Every Store is safe for concurrent use.
// The conformance suite in remote/remotetest checks the contract; it runs
// against every implementation and wrapper, S3 against a real MinIO.
//
// Example:
//
//	store, err := remote.Open(ctx, "file:///var/lib/cambium-remote")
//	if err != nil { ... }
//	defer store.Close()
//	counted := remote.NewCountingStore(store)
//	err = counted.Create(ctx, "vol/commits/0000000000000001", record)
//	if errors.Is(err, remote.ErrExists) { ... someone else claimed it ... }
//	fmt.Println(counted.Stats())
package remote
