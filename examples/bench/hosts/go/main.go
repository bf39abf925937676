// Benchmark host: Herald embedded in Go through the cgo binding (bindings/go),
// linked statically against target/release/libherald.a.
//
// Prints "READY <port>", then obeys line commands on stdin (see loadgen/src/host.rs):
//
//	push <M> <rate> <size>  -> PUSHED <M> <elapsed_ns> <retries>
//	cost <K> <size>         -> COST <K> <elapsed_ns> <errors>
//	quit
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	herald "github.com/herald-rt/herald/bindings/go"
)

func payload(t int64, i int, size int) string {
	head := fmt.Sprintf(`{"t":%d,"i":%d,"pad":"`, t, i)
	n := size - len(head) - 2
	if n < 0 {
		n = 0
	}
	return head + strings.Repeat("x", n) + `"}`
}

func main() {
	session := os.Getenv("BENCH_SESSION")
	if session == "" {
		session = "bench"
	}
	queue := 4096
	if q, err := strconv.Atoi(os.Getenv("BENCH_CLIENT_QUEUE")); err == nil {
		queue = q
	}
	srv, err := herald.Start(herald.Config{Port: herald.Int(0), ClientQueueSize: queue})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Drain events like a real host would.
	go func() {
		for range srv.Events() {
		}
	}()
	fmt.Printf("READY %d\n", srv.Port())

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		p := strings.Fields(in.Text())
		switch {
		case len(p) == 4 && p[0] == "push":
			m, _ := strconv.Atoi(p[1])
			rate, _ := strconv.ParseFloat(p[2], 64)
			size, _ := strconv.Atoi(p[3])
			retries := 0
			start := time.Now()
			for i := 0; i < m; i++ {
				if rate > 0 {
					target := start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
					if d := time.Until(target); d > 0 {
						time.Sleep(d)
					}
				}
				text := payload(time.Now().UnixMicro(), i, size)
				for {
					err := srv.NotifyAIProgress(session, text)
					if errors.Is(err, herald.ErrQueueFull) {
						retries++
						time.Sleep(100 * time.Microsecond)
						continue
					}
					break
				}
			}
			fmt.Printf("PUSHED %d %d %d\n", m, time.Since(start).Nanoseconds(), retries)
		case len(p) == 3 && p[0] == "cost":
			k, _ := strconv.Atoi(p[1])
			size, _ := strconv.Atoi(p[2])
			text := payload(time.Now().UnixMicro(), 0, size)
			errs := 0
			start := time.Now()
			for i := 0; i < k; i++ {
				if srv.NotifyAIProgress(session, text) != nil {
					errs++
				}
			}
			fmt.Printf("COST %d %d %d\n", k, time.Since(start).Nanoseconds(), errs)
		case len(p) >= 1 && p[0] == "quit":
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = srv.Close(ctx)
			cancel()
			return
		}
	}
}
