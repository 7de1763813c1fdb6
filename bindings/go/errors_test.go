package rkl_test

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rkl-project/rkl/bindings/go"
)

// Every status of rkl.h: its number, this package's sentinel, the name in
// the header, and words that rkl_status_str's text must contain.
var statuses = []struct {
	n    int
	s    rkl.Status
	name string
	word string
}{
	{0, rkl.OK, "RKL_OK", "success"},
	{1, rkl.ErrInvalidArgument, "RKL_INVALID_ARGUMENT", "invalid argument"},
	{2, rkl.ErrModelNotFound, "RKL_MODEL_NOT_FOUND", "model file not found"},
	{3, rkl.ErrRuntimeNotFound, "RKL_RUNTIME_NOT_FOUND", "runtime library not found"},
	{4, rkl.ErrRuntimeUnsupported, "RKL_RUNTIME_UNSUPPORTED", "not supported"},
	{5, rkl.ErrModelLoadFailed, "RKL_MODEL_LOAD_FAILED", "model load failed"},
	{6, rkl.ErrRuntimeFailed, "RKL_RUNTIME_FAILED", "failed"},
	{7, rkl.ErrClosed, "RKL_CLOSED", "closed"},
	{8, rkl.ErrReentrant, "RKL_REENTRANT", "reentrant"},
	{9, rkl.ErrNotSupported, "RKL_NOT_SUPPORTED", "not supported"},
	{10, rkl.ErrIO, "RKL_IO", "i/o"},
	{11, rkl.ErrBadHandle, "RKL_BAD_HANDLE", "bad handle"},
	{12, rkl.ErrNullArgument, "RKL_NULL_ARGUMENT", "null argument"},
	{13, rkl.ErrTimeout, "RKL_TIMEOUT", "timed out"},
	{14, rkl.ErrInProgress, "RKL_IN_PROGRESS", "in progress"},
	{15, rkl.ErrPanic, "RKL_PANIC", "panic"},
	{16, rkl.ErrCacheNotFound, "RKL_CACHE_NOT_FOUND", "no prompt cache"},
	{17, rkl.ErrCacheInvalid, "RKL_CACHE_INVALID", "invalid"},
	{18, rkl.ErrCacheVersion, "RKL_CACHE_VERSION", "version"},
	{19, rkl.ErrCacheTruncated, "RKL_CACHE_TRUNCATED", "truncated"},
	{20, rkl.ErrCacheCorrupt, "RKL_CACHE_CORRUPT", "corrupt"},
	{21, rkl.ErrCacheMismatch, "RKL_CACHE_MISMATCH", "does not fit"},
	{22, rkl.ErrAborted, "RKL_ABORTED", "aborted"},
	{23, rkl.ErrRuntimeCrashed, "RKL_RUNTIME_CRASHED", "crashed"},
	{24, rkl.ErrRuntimeTimeout, "RKL_RUNTIME_TIMEOUT", "timeout"},
	{25, rkl.ErrResourceExhausted, "RKL_RESOURCE_EXHAUSTED", "out of system resources"},
	{26, rkl.ErrCacheUntrusted, "RKL_CACHE_UNTRUSTED", "not trusted"},
}

// headerStatuses reads the rkl_status enum from the repository's rkl.h.
func headerStatuses(t *testing.T) map[string]int {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "include", "rkl.h"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	item := regexp.MustCompile(`^\s*(RKL_[A-Z_]+) = (\d+),`)
	found := map[string]int{}
	in := false
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "enum rkl_status"):
			in = true
		case in && strings.HasPrefix(line, "};"):
			return found
		case in:
			if m := item.FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[2])
				found[m[1]] = n
			}
		}
	}
	t.Fatal("no enum rkl_status in rkl.h")
	return nil
}

func TestEveryStatusHasASentinelThatAgreesWithTheHeader(t *testing.T) {
	header := headerStatuses(t)
	if len(header) != len(statuses) {
		t.Errorf("rkl.h has %d statuses, the binding %d", len(header), len(statuses))
	}
	seen := map[string]bool{}
	for n, want := range statuses {
		s := want.s
		text := s.Error()
		switch {
		case want.n != n || int(s) != n:
			t.Errorf("%s: number %d, want %d", want.name, int(s), n)
		case header[want.name] != n:
			t.Errorf("%s: rkl.h says %d, the binding %d", want.name, header[want.name], n)
		case s.Name() != want.name:
			t.Errorf("status %d: Name %q, want %q", n, s.Name(), want.name)
		case !strings.Contains(strings.ToLower(text), want.word):
			t.Errorf("%s: rkl_status_str %q does not say %q", want.name, text, want.word)
		case text == "unknown status" || seen[text] || s.String() != text:
			t.Errorf("%s: text %q", want.name, text)
		}
		seen[text] = true
		if n == 0 {
			continue
		}
		// Wrapped in an *Error, the status is found by errors.Is, the
		// others are not, and the message is the error's text.
		err := error(&rkl.Error{Status: s, Message: "rkl_x: why " + want.name})
		if !errors.Is(err, s) || errors.Is(err, statuses[n%26+1].s) || err.Error() != "rkl: rkl_x: why "+want.name {
			t.Errorf("%s: errors.Is or text wrong for %v", want.name, err)
		}
		if notExist := s == rkl.ErrModelNotFound || s == rkl.ErrCacheNotFound; errors.Is(err, fs.ErrNotExist) != notExist {
			t.Errorf("%s: errors.Is(fs.ErrNotExist) = %v", want.name, !notExist)
		}
	}
	if s := rkl.Status(len(statuses)); s.Error() != "unknown status" || s.Name() != "RKL_STATUS_27" {
		t.Errorf("status 27: %q %q", s.Error(), s.Name())
	}
}

// A failing call's error carries the library's message for that call.
func TestErrorMessageIsTheLibrarysLastMessage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.rklcache")
	_, err := rkl.InspectCache(path)
	var e *rkl.Error
	if !errors.As(err, &e) || e.Status != rkl.ErrCacheNotFound || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err %#v", err)
	}
	if !strings.HasPrefix(e.Message, "rkl_cache_inspect") || !strings.Contains(e.Message, path) || e.Message == e.Status.Error() {
		t.Errorf("message %q", e.Message)
	}
	_, err = rkl.Open(fastModel(t), rkl.WithCallTimeout(-1))
	if !errors.Is(err, rkl.ErrInvalidArgument) || !strings.Contains(err.Error(), "call timeout") {
		t.Errorf("negative timeout: %v", err)
	}
	_, err = rkl.Open(fastModel(t), rkl.WithAbortGrace(0))
	if !errors.Is(err, rkl.ErrInvalidArgument) || !strings.Contains(err.Error(), "abort grace") {
		t.Errorf("zero grace: %v", err)
	}
}
