// A Go host process for the multi-process test: starts a Herald node (or,
// with HERALD_LISTEN=0, an emitter) on the Redis broker named by
// HERALD_REDIS_URL and HERALD_REDIS_PREFIX, prints `ready <port>`, then obeys
// stdin (see ../README.md).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	herald "github.com/herald-rt/herald/bindings/go"
)

func main() {
	srv, err := herald.Start(herald.Config{
		Port:   herald.Int(0),
		Listen: herald.Bool(os.Getenv("HERALD_LISTEN") != "0"),
		Broker: &herald.BrokerConfig{Redis: &herald.RedisConfig{
			URL: os.Getenv("HERALD_REDIS_URL"), Prefix: os.Getenv("HERALD_REDIS_PREFIX"),
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("ready %d\n", srv.Port())
	lines := bufio.NewScanner(os.Stdin)
	lines.Buffer(make([]byte, 1<<16), 1<<20)
	for lines.Scan() {
		command, rest, _ := strings.Cut(strings.TrimSpace(lines.Text()), " ")
		if command == "stop" {
			break
		}
		if err := obey(srv, command, rest); err != nil {
			fmt.Printf("error %v\n", err) // the test fails on it
		} else {
			fmt.Println("ok")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("stopped")
}

func obey(srv *herald.Server, command, rest string) error {
	switch command {
	case "publish":
		channel, message, _ := strings.Cut(rest, " ")
		return srv.Publish(channel, json.RawMessage(message))
	case "broadcast":
		return srv.Broadcast(json.RawMessage(rest))
	default:
		return fmt.Errorf("unknown command %q", command)
	}
}
