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
//	s3://bucket/prefix  Amazon S3 or any S3-compatible store: package
//	                    remote/s3, which a program must import to use it;
//	                    credentials, region and endpoint come from the standard
//	                    AWS chain, never from the URL
//
// Backends other than mem and file live in packages of their own that
// register their scheme with Register from init, so that a program links an
// SDK only when it imports the backend:
//
//	import _ "github.com/cambiumdb/cambium/remote/s3"
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
// against every implementation and wrapper, S3 against a real MinIO. The
// argument checks ValidateKey, ValidateRange, ClampRange and ListLimit are
// exported so that backends outside the package refuse the same requests
// with the same sentinels.
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
