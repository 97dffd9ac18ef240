package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// FileStore is a Store kept in a directory tree: the object at key "a/b/c" is
// the regular file <root>/a/b/c. Several FileStores, in one process or in
// many, may share a root; Create stays exclusive across all of them because it
// relies on link(2) failing when the name exists.
//
// Writes go to a temporary file under <root>/.cambium-tmp, which is synced
// and then renamed (Put) or linked (Create) into place, so readers never see
// a partial object. The directories an object needs are created on demand
// and removed by Delete once empty.
//
// A directory tree cannot hold both "a" and "a/b", which a flat object store
// can. Put or Create of such a key fails with an error wrapping ErrInvalidKey
// that names the colliding key, and changes nothing. For the same reason a
// key part may be at most 255 bytes (the file name limit of common file
// systems), and the first part may not be ".cambium-tmp".
type FileStore struct {
	root string // absolute and clean
	tmp  string // root/fileTmpDir
}

var _ Store = (*FileStore)(nil)

const (
	// fileTmpDir is the directory under the root that holds files being
	// written. Its name is reserved: no key may begin with it.
	fileTmpDir = ".cambium-tmp"

	// staleTempAge is how old a temporary file must be before
	// NewFileStore removes it as the leftover of a crashed writer. Live
	// writers, possibly in other processes, finish long before this.
	staleTempAge = time.Hour

	// maxFileNameLen is the longest key part the store accepts: NAME_MAX
	// on Linux and macOS file systems.
	maxFileNameLen = 255

	// maxInstallAttempts bounds how often a write retries after a
	// concurrent Delete removed the directory it was writing into.
	maxInstallAttempts = 16
)

// NewFileStore returns a store rooted at the absolute directory root,
// creating it if it does not exist. It removes temporary files left behind by
// writers that crashed more than an hour ago.
func NewFileStore(root string) (*FileStore, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("file store: root %q is not an absolute path", root)
	}
	root = filepath.Clean(root)
	s := &FileStore{root: root, tmp: filepath.Join(root, fileTmpDir)}
	if err := os.MkdirAll(s.tmp, 0o755); err != nil {
		return nil, fmt.Errorf("file store: %w", err)
	}
	s.removeStaleTemps(time.Now())
	return s, nil
}

// Root returns the directory the store keeps its objects in.
func (s *FileStore) Root() string {
	return s.root
}

// Get implements Store.
func (s *FileStore) Get(ctx context.Context, key string) ([]byte, error) {
	p, err := s.objectPath(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("file get: %w", err)
	}
	f, size, err := openObject(p)
	if err != nil {
		return nil, fmt.Errorf("file get %s: %w", key, err)
	}
	defer f.Close()
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("file get %s: %w", key, err)
	}
	return data, nil
}

// GetRange implements Store.
func (s *FileStore) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	p, err := s.objectPath(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("file get range: %w", err)
	}
	if err := ValidateRange(offset, length); err != nil {
		return nil, fmt.Errorf("file get range %s: %w", key, err)
	}
	f, size, err := openObject(p)
	if err != nil {
		return nil, fmt.Errorf("file get range %s: %w", key, err)
	}
	defer f.Close()
	start, end, err := ClampRange(size, offset, length)
	if err != nil {
		return nil, fmt.Errorf("file get range %s: %w", key, err)
	}
	data := make([]byte, end-start)
	// Objects are replaced by rename, never rewritten, so the open file
	// still holds size bytes and a short read is an I/O failure.
	if n, err := f.ReadAt(data, start); n < len(data) {
		return nil, fmt.Errorf("file get range %s: read %d of %d bytes: %w", key, n, len(data), err)
	}
	return data, nil
}

// Size implements Store.
func (s *FileStore) Size(ctx context.Context, key string) (int64, error) {
	p, err := s.objectPath(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("file size: %w", err)
	}
	fi, err := os.Stat(p)
	switch {
	case isNoObject(err):
		return 0, fmt.Errorf("file size %s: %w", key, ErrNotFound)
	case err != nil:
		return 0, fmt.Errorf("file size %s: %w", key, err)
	case !fi.Mode().IsRegular():
		return 0, fmt.Errorf("file size %s: %w", key, ErrNotFound)
	}
	return fi.Size(), nil
}

// Put implements Store.
func (s *FileStore) Put(ctx context.Context, key string, data []byte) error {
	p, err := s.objectPath(ctx, key)
	if err != nil {
		return fmt.Errorf("file put: %w", err)
	}
	tmp, err := s.writeTemp(data)
	if err != nil {
		return fmt.Errorf("file put %s: %w", key, err)
	}
	if err := s.install(key, p, func() error { return os.Rename(tmp, p) }); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("file put %s: %w", key, err)
	}
	return nil
}

// Create implements Store.
func (s *FileStore) Create(ctx context.Context, key string, data []byte) error {
	p, err := s.objectPath(ctx, key)
	if err != nil {
		return fmt.Errorf("file create: %w", err)
	}
	tmp, err := s.writeTemp(data)
	if err != nil {
		return fmt.Errorf("file create %s: %w", key, err)
	}
	// The link is the object; the temporary name goes either way.
	defer os.Remove(tmp)
	if err := s.install(key, p, func() error { return os.Link(tmp, p) }); err != nil {
		return fmt.Errorf("file create %s: %w", key, err)
	}
	return nil
}

// List implements Store. It reads only the directories that can hold keys
// after opts.StartAfter with opts.Prefix, in key order, and stops at the
// first object past the limit.
func (s *FileStore) List(ctx context.Context, opts ListOptions) (ListPage, error) {
	if err := ctx.Err(); err != nil {
		return ListPage{}, fmt.Errorf("file list: %w", err)
	}
	limit, err := ListLimit(opts)
	if err != nil {
		return ListPage{}, fmt.Errorf("file list: %w", err)
	}
	// Every key with the prefix lies below the prefix's last whole part.
	dirKey := ""
	if i := strings.LastIndexByte(opts.Prefix, '/'); i >= 0 {
		dirKey = opts.Prefix[:i]
	}
	if first, _, _ := strings.Cut(dirKey, "/"); first == fileTmpDir {
		return ListPage{}, nil
	}
	l := fileLister{ctx: ctx, opts: opts, limit: limit}
	if _, err := l.walk(filepath.Join(s.root, filepath.FromSlash(dirKey)), dirKey); err != nil {
		return ListPage{}, fmt.Errorf("file list: %w", err)
	}
	return l.page, nil
}

// Delete implements Store. The removal is not synced: a crash may bring a
// deleted object back, which the contract allows since Delete promises no
// durability.
func (s *FileStore) Delete(ctx context.Context, key string) error {
	p, err := s.objectPath(ctx, key)
	if err != nil {
		return fmt.Errorf("file delete: %w", err)
	}
	// Unlink, unlike os.Remove, never removes a directory, so a key that
	// names a directory of other keys is left alone.
	if err := syscall.Unlink(p); err != nil {
		fi, serr := os.Lstat(p)
		if isNoObject(serr) || (serr == nil && fi.IsDir()) {
			return nil
		}
		return fmt.Errorf("file delete %s: %w", key, &fs.PathError{Op: "unlink", Path: p, Err: err})
	}
	s.removeEmptyDirs(filepath.Dir(p))
	return nil
}

// Close implements Store. A FileStore holds no resources between calls.
func (s *FileStore) Close() error {
	return nil
}

// objectPath checks a call and returns the file that holds key's object.
func (s *FileStore) objectPath(ctx context.Context, key string) (string, error) {
	if err := checkCall(ctx, key); err != nil {
		return "", err
	}
	for part := range strings.SplitSeq(key, "/") {
		if len(part) > maxFileNameLen {
			return "", fmt.Errorf("%w: file store: %q has a %d byte path part, longer than %d", ErrInvalidKey, key, len(part), maxFileNameLen)
		}
	}
	if first, _, _ := strings.Cut(key, "/"); first == fileTmpDir {
		return "", fmt.Errorf("%w: file store: %q begins with %q, which is reserved for temporary files", ErrInvalidKey, key, fileTmpDir)
	}
	p := filepath.Join(s.root, filepath.FromSlash(key))
	// ValidateKey already refuses ".." parts; this guards against a
	// platform whose path rules differ from the key rules.
	if rel, err := filepath.Rel(s.root, p); err != nil || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("%w: file store: %q resolves outside the root %s", ErrInvalidKey, key, s.root)
	}
	return p, nil
}

// openObject opens the file of an object, returning ErrNotFound if there is
// none. A directory is not an object: it holds other keys.
func openObject(p string) (*os.File, int64, error) {
	f, err := os.Open(p)
	if isNoObject(err) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = ErrNotFound
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// isNoObject reports whether err from a file system call on an object's path
// means that no file exists there: the name is missing, or a part of the path
// is a file rather than a directory.
func isNoObject(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// writeTemp writes data to a new synced file in the temporary directory and
// returns its name.
func (s *FileStore) writeTemp(data []byte) (string, error) {
	f, err := os.CreateTemp(s.tmp, "obj-*")
	if errors.Is(err, fs.ErrNotExist) {
		// Someone removed the temporary directory; it holds nothing of
		// value, so make it again.
		if err := os.MkdirAll(s.tmp, 0o755); err != nil {
			return "", err
		}
		f, err = os.CreateTemp(s.tmp, "obj-*")
	}
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// install gives the written object its name p by calling link (a rename or
// a hard link), creating the directories p needs, and syncs the directory
// that holds the new name. It retries when a concurrent Delete removes a
// directory between its creation and the link.
func (s *FileStore) install(key, p string, link func() error) error {
	for attempt := 1; ; attempt++ {
		err := link()
		if err == nil {
			return syncDir(filepath.Dir(p))
		}
		if attempt == maxInstallAttempts {
			return err
		}
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
			// A directory on the way is missing, or is an object.
			if err := s.mkdirs(key); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist), errors.Is(err, syscall.EISDIR):
			fi, serr := os.Lstat(p)
			switch {
			case isNoObject(serr):
				// Gone since the link failed: try again.
			case serr != nil:
				return serr
			case fi.Mode().IsRegular():
				return ErrExists
			case !fi.IsDir():
				return err
			case syscall.Rmdir(p) != nil:
				// Only an empty directory can be removed; this one
				// holds other keys.
				return fmt.Errorf("%w: file store cannot hold both %q and the keys that begin with %q", ErrInvalidKey, key, key+"/")
			}
		default:
			return err
		}
	}
}

// mkdirs creates the directories between the root and key's file, syncing
// the parent of each one it creates so that the path outlives a crash.
func (s *FileStore) mkdirs(key string) error {
	parts := strings.Split(key, "/")
	parts = parts[:len(parts)-1]
	var err error
	for range maxInstallAttempts {
		err = s.mkdirsOnce(key, parts)
		// ErrNotExist means a concurrent Delete removed a directory
		// just made; start again from the root.
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return err
}

func (s *FileStore) mkdirsOnce(key string, parts []string) error {
	dir := s.root
	for i, part := range parts {
		parent := dir
		dir = filepath.Join(dir, part)
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			if err := syncDir(parent); err != nil {
				return err
			}
			continue
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		fi, err := os.Lstat(dir)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%w: file store cannot hold both %q and %q", ErrInvalidKey, key, strings.Join(parts[:i+1], "/"))
		}
	}
	return nil
}

// removeEmptyDirs removes dir and its parents up to the root for as long as
// they are empty. It is best effort: a failure only leaves an empty
// directory, and a writer that loses its directory to this makes it again.
func (s *FileStore) removeEmptyDirs(dir string) {
	for dir != s.root && strings.HasPrefix(dir, s.root) {
		if syscall.Rmdir(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}

// removeStaleTemps removes temporary files older than staleTempAge.
func (s *FileStore) removeStaleTemps(now time.Time) {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err == nil && fi.Mode().IsRegular() && now.Sub(fi.ModTime()) > staleTempAge {
			os.Remove(filepath.Join(s.tmp, e.Name()))
		}
	}
}

// syncDir makes the entries of directory dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// fileLister walks a FileStore's directories for one List call.
type fileLister struct {
	ctx   context.Context
	opts  ListOptions
	limit int
	page  ListPage
}

// fileEntry is a directory entry with the string it sorts by: the keys in a
// subdirectory d all begin with "d/", so d sorts as "d/" among its sibling
// files, which makes a depth-first walk visit keys in byte order.
type fileEntry struct {
	fs.DirEntry
	sortName string
}

// walk visits the keys in directory dir, whose keys begin with dirKey+"/" (or
// are its entries, at the root). It reports whether the page is complete.
func (l *fileLister) walk(dir, dirKey string) (done bool, err error) {
	if err := l.ctx.Err(); err != nil {
		return true, err
	}
	dirEntries, err := os.ReadDir(dir)
	if isNoObject(err) || errors.Is(err, syscall.ENAMETOOLONG) {
		// Removed by a concurrent Delete, never made, or a name no key
		// of this store can have.
		return false, nil
	}
	if err != nil {
		return true, err
	}
	entries := make([]fileEntry, len(dirEntries))
	for i, e := range dirEntries {
		entries[i] = fileEntry{DirEntry: e, sortName: e.Name()}
		if e.IsDir() {
			entries[i].sortName += "/"
		}
	}
	slices.SortFunc(entries, func(a, b fileEntry) int { return strings.Compare(a.sortName, b.sortName) })

	prefix, after := l.opts.Prefix, l.opts.StartAfter
	for _, e := range entries {
		key := e.Name()
		if dirKey == "" {
			if key == fileTmpDir {
				continue
			}
		} else {
			key = dirKey + "/" + key
		}
		switch {
		case e.IsDir():
			sub := key + "/"
			if !strings.HasPrefix(sub, prefix) && !strings.HasPrefix(prefix, sub) {
				continue
			}
			if after >= sub && !strings.HasPrefix(after, sub) {
				// Every key under sub sorts before after.
				continue
			}
			if done, err := l.walk(filepath.Join(dir, e.Name()), key); done {
				return true, err
			}
		case e.Type().IsRegular():
			if key <= after || !strings.HasPrefix(key, prefix) || ValidateKey(key) != nil {
				continue
			}
			fi, err := e.Info()
			if isNoObject(err) {
				continue
			}
			if err != nil {
				return true, err
			}
			if len(l.page.Objects) == l.limit {
				l.page.Truncated = true
				return true, nil
			}
			l.page.Objects = append(l.page.Objects, ObjectInfo{Key: key, Size: fi.Size(), Modified: fi.ModTime()})
		}
	}
	return false, nil
}
