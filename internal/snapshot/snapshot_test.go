package snapshot

import (
	"reflect"
	"sync"
	"testing"
	"time"
)

func res(name string, ok bool) Result {
	return Result{Name: name, Kind: "file", OK: ok, Detail: name + " detail"}
}

func TestReadyAndFailing(t *testing.T) {
	tests := []struct {
		name    string
		results []Result
		ready   bool
		failing []string
	}{
		{"no results", nil, true, nil},
		{"empty results", []Result{}, true, nil},
		{"all ok", []Result{res("a", true), res("b", true)}, true, nil},
		{"one fails", []Result{res("a", true), res("b", false)}, false, []string{"b"}},
		{"several fail, configuration order", []Result{res("c", false), res("a", true), res("b", false), res("d", false)}, false, []string{"c", "b", "d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Snapshot{Results: tt.results}
			if got := s.Ready(); got != tt.ready {
				t.Errorf("Ready() = %v, want %v", got, tt.ready)
			}
			f := s.Failing()
			var got []string
			for _, r := range f {
				got = append(got, r.Name)
				if r.OK {
					t.Errorf("Failing() returned %+v", r)
				}
			}
			if !reflect.DeepEqual(got, tt.failing) {
				t.Errorf("Failing() = %v, want %v", got, tt.failing)
			}
			// Failing returns copies of the full results.
			for _, r := range f {
				if r.Detail != r.Name+" detail" || r.Kind != "file" {
					t.Errorf("Failing() lost fields: %+v", r)
				}
			}
			if len(f) > 0 {
				f[0].Name = "changed"
				if s.Results[indexOf(s.Results, tt.failing[0])].Name != tt.failing[0] {
					t.Error("Failing() aliases the snapshot's results")
				}
			}
		})
	}
}

func indexOf(rs []Result, name string) int {
	for i, r := range rs {
		if r.Name == name {
			return i
		}
	}
	return -1
}

func TestStore(t *testing.T) {
	var s Store
	if s.Load() != nil {
		t.Fatal("zero Store should load nil")
	}
	a := &Snapshot{Taken: time.Unix(1, 0)}
	b := &Snapshot{Taken: time.Unix(2, 0)}
	s.Publish(a)
	if s.Load() != a {
		t.Fatal("Load after Publish(a) is not a")
	}
	s.Publish(b)
	if s.Load() != b {
		t.Fatal("Load after Publish(b) is not b")
	}
	s.Publish(nil)
	if s.Load() != nil {
		t.Fatal("Publish(nil) should reset the store")
	}
}

// Readers always see a whole snapshot published by some writer (run with -race).
func TestStoreConcurrent(t *testing.T) {
	var s Store
	const writers, perWriter = 4, 200
	published := make([][]*Snapshot, writers)
	for w := range published {
		for i := 0; i < perWriter; i++ {
			n := w*perWriter + i
			published[w] = append(published[w], &Snapshot{Results: []Result{{Name: "w", OK: n%2 == 0}}, Taken: time.Unix(int64(n), 0)})
		}
	}
	valid := map[*Snapshot]bool{}
	for _, l := range published {
		for _, p := range l {
			valid[p] = true
		}
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan string, 1)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if got := s.Load(); got != nil {
					if !valid[got] || len(got.Results) != 1 {
						select {
						case errs <- "reader saw a snapshot nobody published":
						default:
						}
					}
					_ = got.Ready()
				}
			}
		}()
	}
	var ww sync.WaitGroup
	for w := 0; w < writers; w++ {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for _, p := range published[w] {
				s.Publish(p)
			}
		}()
	}
	ww.Wait()
	close(stop)
	wg.Wait()
	select {
	case e := <-errs:
		t.Fatal(e)
	default:
	}
	if !valid[s.Load()] {
		t.Error("final snapshot was not published by a writer")
	}
}
