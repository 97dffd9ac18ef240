package engine

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests of several processes on one data directory run this test
// binary again as the other processes, with shareChildEnv set to the role
// and the directory.
const shareChildEnv = "CAMBIUM_SHARE_CHILD"

const (
	bankAccounts = 8
	bankOpening  = 1000
)

func bankInit(t testing.TB, e *Engine) {
	t.Helper()
	v, err := e.Volume("bank")
	if err != nil {
		t.Fatal(err)
	}
	s := v.Snapshot()
	defer s.Release()
	txn, err := v.Begin(s)
	if err != nil {
		t.Fatal(err)
	}
	for p := PageNo(1); p <= bankAccounts; p++ {
		img := make([]byte, 512)
		binary.BigEndian.PutUint64(img, bankOpening)
		if err := txn.WritePage(p, img); err != nil {
			t.Fatal(err)
		}
	}
	next, err := txn.Commit(Durable)
	if err != nil {
		t.Fatal(err)
	}
	next.Release()
}

// bankTransfer moves money between two random accounts in one write
// transaction; the error is ErrBusy or ErrSnapshotStale when another
// writer got there first.
func bankTransfer(v *Volume, rng *rand.Rand) error {
	s, err := v.Pin()
	if err != nil {
		return err
	}
	defer s.Release()
	txn, err := v.Begin(s)
	if err != nil {
		return err
	}
	defer txn.Rollback()
	a := PageNo(1 + rng.IntN(bankAccounts))
	b := PageNo(1 + (int(a)+rng.IntN(bankAccounts-1))%bankAccounts)
	pa, err := txn.ReadPage(a, nil)
	if err != nil {
		return err
	}
	pb, err := txn.ReadPage(b, nil)
	if err != nil {
		return err
	}
	ba, bb := binary.BigEndian.Uint64(pa), binary.BigEndian.Uint64(pb)
	amount := min(uint64(1+rng.IntN(50)), ba)
	if amount == 0 {
		// Always change something, so that every commit makes a version.
		a, b, ba, bb, pa, pb = b, a, bb, ba, pb, pa
		amount = 1
	}
	binary.BigEndian.PutUint64(pa, ba-amount)
	binary.BigEndian.PutUint64(pb, bb+amount)
	if err := txn.WritePage(a, pa); err != nil {
		return err
	}
	if err := txn.WritePage(b, pb); err != nil {
		return err
	}
	next, err := txn.Commit(Buffered)
	if err != nil {
		return err
	}
	next.Release()
	return nil
}

// bankSum returns the total of the accounts at one snapshot.
func bankSum(v *Volume) (uint64, Version, error) {
	s, err := v.Pin()
	if err != nil {
		return 0, 0, err
	}
	defer s.Release()
	var sum uint64
	for p := PageNo(1); p <= bankAccounts; p++ {
		img, err := s.ReadPage(p, nil)
		if err != nil {
			return 0, 0, err
		}
		sum += binary.BigEndian.Uint64(img)
	}
	return sum, s.Version(), nil
}

func retryable(err error) bool {
	return errors.Is(err, ErrBusy) || errors.Is(err, ErrSnapshotStale) || errors.Is(err, ErrOwnerLost)
}

// runBank makes n transfers, retrying the ones another writer beat, and
// checks the total between them. It returns the transfers committed.
func runBank(v *Volume, n int, seed uint64) (int, error) {
	rng := rand.New(rand.NewPCG(seed, 1))
	done := 0
	for done < n {
		err := bankTransfer(v, rng)
		if err != nil && !retryable(err) {
			return done, err
		}
		if err == nil {
			done++
		} else {
			time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
		}
		if done%10 == 0 {
			sum, ver, err := bankSum(v)
			if err != nil && !errors.Is(err, ErrOwnerLost) {
				return done, err
			}
			if err == nil && sum != bankAccounts*bankOpening {
				return done, fmt.Errorf("invariant broken at version %d: total %d", ver, sum)
			}
		}
	}
	return done, nil
}

func startChild(t *testing.T, role, dir string, args ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestShare_Child$", "-test.count=1")
	cmd.Env = append(os.Environ(), shareChildEnv+"="+strings.Join(append([]string{role, dir}, args...), "\x1f"))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out)
}

// TestShare_Child is the other processes of the share tests.
func TestShare_Child(t *testing.T) {
	env := os.Getenv(shareChildEnv)
	if env == "" {
		return
	}
	f := strings.Split(env, "\x1f")
	role, dir := f[0], f[1]
	opts := Options{Dir: dir}
	if role == "open" {
		opts.testingKnobs.joinTimeout = 300 * time.Millisecond
	}
	e, err := Open(opts)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	switch role {
	case "bank":
		n, _ := strconv.Atoi(f[2])
		seed, _ := strconv.ParseUint(f[3], 10, 64)
		v, _ := e.Volume("bank")
		done, err := runBank(v, n, seed)
		fmt.Printf("transfers %d\n", done)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(3)
		}
	case "owner":
		// The owner commits a counter to page 1 until it is killed,
		// saying which commits returned.
		if e.cl != nil {
			fmt.Println("error: not the owner")
			os.Exit(3)
		}
		v, _ := e.Volume("count")
		fmt.Println("ready")
		for i := uint64(1); ; i++ {
			s := v.Snapshot()
			txn, err := v.Begin(s)
			if err == nil {
				img := make([]byte, 512)
				binary.BigEndian.PutUint64(img, i)
				txn.WritePage(1, img)
				var next *Snapshot
				if next, err = txn.Commit(Buffered); err == nil {
					fmt.Printf("acked %d %d\n", next.Version(), i)
					next.Release()
				}
			}
			s.Release()
			if err != nil && !retryable(err) {
				fmt.Println("error:", err)
				os.Exit(3)
			}
		}
	case "open":
		fmt.Println("opened")
	case "create":
		// A volume that does not exist yet, made by a process that
		// joined the owner: its first page sets its page size.
		if e.cl == nil {
			fmt.Println("error: the owner")
			os.Exit(3)
		}
		v, _ := e.Volume("fresh")
		s := v.Snapshot()
		txn, err := v.Begin(s)
		if err == nil {
			img := make([]byte, 4096)
			copy(img, "fresh page")
			if err = txn.WritePage(1, img); err == nil {
				var next *Snapshot
				if next, err = txn.Commit(Buffered); err == nil {
					next.Release()
				}
			}
		}
		s.Release()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(3)
		}
		fmt.Println("created")
	}
	if err := e.Close(); err != nil {
		fmt.Println("close:", err)
		os.Exit(4)
	}
	os.Exit(0)
}

// TestShare_Bank runs transfers between accounts from four processes at
// once, the owner and three that joined it, and checks that the total
// never changes and that every transfer a process committed is a version.
func TestShare_Bank(t *testing.T) {
	dir := t.TempDir()
	e := openTestEngine(t, dir, Options{})
	defer e.Close()
	bankInit(t, e)
	v, _ := e.Volume("bank")
	start, _, _ := v.Head()
	const each = 150
	var cmds []*exec.Cmd
	var outs []*bufio.Scanner
	for i := range 3 {
		cmd, out := startChild(t, "bank", dir, strconv.Itoa(each), strconv.Itoa(i+1))
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	mine, err := runBank(v, each, 99)
	if err != nil {
		t.Fatal(err)
	}
	total := mine
	for i, cmd := range cmds {
		var lines []string
		for outs[i].Scan() {
			lines = append(lines, outs[i].Text())
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("process %d: %v: %s", i, err, lines)
		}
		var n int
		if len(lines) == 0 {
			t.Fatalf("process %d said nothing", i)
		}
		fmt.Sscanf(lines[0], "transfers %d", &n)
		total += n
	}
	head, _, _ := v.Head()
	if int(head-start) != total || total != 4*each {
		t.Fatalf("%d transfers acknowledged, %d versions made", total, head-start)
	}
	sum, _, err := bankSum(v)
	if err != nil || sum != bankAccounts*bankOpening {
		t.Fatalf("total %d, %v", sum, err)
	}
}

// TestShare_ClientCreatesVolume has a process that joined the owner make a
// new volume: its first write sets the page size, and the owner reads the
// commit.
func TestShare_ClientCreatesVolume(t *testing.T) {
	dir := t.TempDir()
	e := openTestEngine(t, dir, Options{})
	defer e.Close()
	cmd, out := startChild(t, "create", dir)
	var lines []string
	for out.Scan() {
		lines = append(lines, out.Text())
	}
	if err := cmd.Wait(); err != nil || len(lines) == 0 || lines[0] != "created" {
		t.Fatalf("child: %v: %q", err, lines)
	}
	v, err := e.Volume("fresh")
	if err != nil {
		t.Fatal(err)
	}
	s := v.Snapshot()
	defer s.Release()
	img, err := s.ReadPage(1, nil)
	if err != nil || s.PageSize() != 4096 || !bytes.HasPrefix(img, []byte("fresh page")) {
		t.Fatalf("page 1 of the new volume: %v, page size %d, %q", err, s.PageSize(), img[:min(len(img), 16)])
	}
}

// TestShare_OwnerKilled kills the owner with SIGKILL while it commits, many
// times, with a process that joined it committing too: the joined process
// takes over, and every commit either acknowledged is there.
func TestShare_OwnerKilled(t *testing.T) {
	rounds := 50
	if testing.Short() {
		rounds = 10
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	var lastOwner uint64
	for round := range rounds {
		cmd, out := startChild(t, "owner", dir)
		if !out.Scan() || out.Text() != "ready" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: owner said %q", round, out.Text())
		}
		acks := make(chan [2]uint64, 1<<16)
		go func() {
			for out.Scan() {
				var a [2]uint64
				if _, err := fmt.Sscanf(out.Text(), "acked %d %d", &a[0], &a[1]); err == nil {
					acks <- a
				}
			}
			close(acks)
		}()
		e := openTestEngine(t, dir, Options{})
		if e.cl == nil {
			t.Fatalf("round %d: opened as the owner", round)
		}
		v, _ := e.Volume("count")
		// This process commits to page 2 of the same volume, racing the
		// owner for the write lock.
		var mine uint64
		deadline := time.Now().Add(time.Duration(5+rng.IntN(40)) * time.Millisecond)
		killed := false
		for tries := 0; ; tries++ {
			if !killed && time.Now().After(deadline) {
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
			s, err := v.Pin()
			if err != nil {
				t.Fatalf("round %d: pin: %v", round, err)
			}
			txn, err := v.Begin(s)
			if err == nil {
				img := make([]byte, 512)
				binary.BigEndian.PutUint64(img, mine+1)
				if err = txn.WritePage(2, img); err == nil {
					var next *Snapshot
					if next, err = txn.Commit(Buffered); err == nil {
						mine++
						next.Release()
					}
				}
				txn.Rollback()
			}
			s.Release()
			if err != nil && !retryable(err) {
				t.Fatalf("round %d: %v", round, err)
			}
			if killed && err == nil && e.cl.local() != nil {
				break
			}
			if tries > 100000 {
				t.Fatalf("round %d: never took over", round)
			}
		}
		cmd.Wait()
		var last [2]uint64
		for a := range acks {
			last = a
		}
		s := v.Snapshot()
		p1, err := s.ReadPage(1, nil)
		if err != nil {
			t.Fatal(err)
		}
		p2, err := s.ReadPage(2, nil)
		if err != nil {
			t.Fatal(err)
		}
		got1, got2 := binary.BigEndian.Uint64(p1), binary.BigEndian.Uint64(p2)
		if s.Version() < Version(last[0]) || got1 < last[1] && last[1] > 0 {
			t.Fatalf("round %d: the owner acknowledged version %d (counter %d); after the takeover version %d has counter %d",
				round, last[0], last[1], s.Version(), got1)
		}
		if got2 != mine {
			t.Fatalf("round %d: this process committed %d, page 2 holds %d", round, mine, got2)
		}
		s.Release()
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		lastOwner = last[1]
	}
	_ = lastOwner
	if _, err := os.Stat(filepath.Join(dir, socketName)); !os.IsNotExist(err) {
		t.Fatalf("socket left after the last owner closed: %v", err)
	}
}

// BenchmarkShare_ReadTxn is a read transaction (a pin, a page read, the
// release) in the owner and in an Engine that joined it: with no commit
// in between, the joined one asks the owner nothing.
func BenchmarkShare_ReadTxn(b *testing.B) {
	for _, side := range []string{"owner", "joined"} {
		b.Run("side="+side, func(b *testing.B) {
			v := benchBank(b, side)
			buf := make([]byte, 0, 512)
			b.ResetTimer()
			for i := range b.N {
				s, err := v.Pin()
				if err != nil {
					b.Fatal(err)
				}
				if buf, err = s.ReadPage(PageNo(1+i%bankAccounts), buf[:0]); err != nil {
					b.Fatal(err)
				}
				s.Release()
			}
		})
	}
}

// BenchmarkShare_Commit is a small write transaction (two pages read and
// written, a Buffered commit) in the owner and in an Engine that joined it.
func BenchmarkShare_Commit(b *testing.B) {
	for _, side := range []string{"owner", "joined"} {
		b.Run("side="+side, func(b *testing.B) {
			v := benchBank(b, side)
			rng := rand.New(rand.NewPCG(1, 2))
			b.ResetTimer()
			for range b.N {
				if err := bankTransfer(v, rng); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestShare_Unreachable: a process that finds the directory locked by one
// that does not serve it says so, naming the holder, once it has tried
// for a while; a stale socket file does not stop the next owner.
func TestShare_Unreachable(t *testing.T) {
	dir := t.TempDir()
	owner := openTestEngine(t, dir, Options{Exclusive: true})
	// Another process would find no socket, like this one.
	if _, err := os.Stat(filepath.Join(dir, socketName)); !os.IsNotExist(err) {
		t.Fatalf("an exclusive owner serves: %v", err)
	}
	cmd, out := startChild(t, "open", dir)
	var lines []string
	for out.Scan() {
		lines = append(lines, out.Text())
	}
	cmd.Wait()
	said := strings.Join(lines, "\n")
	if !strings.Contains(said, "which does not serve it") || !strings.Contains(said, fmt.Sprintf("held by process %d", os.Getpid())) {
		t.Fatalf("the other process said: %s", said)
	}
	owner.Close()
	// A socket file no process listens on, as a killed owner leaves.
	if err := os.WriteFile(filepath.Join(dir, socketName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e := openTestEngine(t, dir, Options{})
	defer e.Close()
	if e.cl != nil || e.srv == nil {
		t.Fatal("not the owner")
	}
	cmd, out = startChild(t, "open", dir)
	lines = nil
	for out.Scan() {
		lines = append(lines, out.Text())
	}
	if err := cmd.Wait(); err != nil || len(lines) == 0 || lines[0] != "opened" {
		t.Fatalf("joining after a stale socket: %v %q", err, lines)
	}
}

// benchBank returns the bank volume of a new directory, in its owner or
// (side "joined") in an Engine that joined it.
func benchBank(b *testing.B, side string) *Volume {
	dir := b.TempDir()
	owner := openTestEngine(b, dir, Options{})
	b.Cleanup(func() { owner.Close() })
	bankInit(b, owner)
	e := owner
	if side == "joined" {
		opts := Options{}
		opts.testingKnobs.joinOwn = true
		e = openTestEngine(b, dir, opts)
		b.Cleanup(func() { e.Close() })
	}
	v, err := e.Volume("bank")
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// TestShare_Visibility: a commit is visible to the next transaction of
// every process, while another process commits all the time.
func TestShare_Visibility(t *testing.T) {
	dir := t.TempDir()
	owner := openTestEngine(t, dir, Options{})
	defer owner.Close()
	bankInit(t, owner)
	join := func() *Volume {
		opts := Options{}
		opts.testingKnobs.joinOwn = true
		e := openTestEngine(t, dir, opts)
		t.Cleanup(func() { e.Close() })
		v, _ := e.Volume("bank")
		return v
	}
	a, b := join(), join()
	ov, _ := owner.Volume("bank")
	stop := make(chan struct{})
	done := make(chan error)
	go func() {
		rng := rand.New(rand.NewPCG(3, 4))
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := bankTransfer(ov, rng); err != nil && !retryable(err) {
				done <- err
				return
			}
		}
	}()
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 500; i++ {
		if err := bankTransfer(a, rng); err != nil {
			if retryable(err) {
				continue
			}
			t.Fatal(err)
		}
		a.cv.mu.Lock()
		committed := a.cv.known
		a.cv.mu.Unlock()
		for _, v := range []*Volume{a, b, ov} {
			s, err := v.Pin()
			if err != nil {
				t.Fatal(err)
			}
			if s.Version() < committed {
				t.Fatalf("after a commit of version %d, a transaction began at version %d", committed, s.Version())
			}
			s.Release()
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
