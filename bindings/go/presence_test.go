package herald

import (
	"errors"
	"net/url"
	"sort"
	"testing"
)

// Presence through the binding: Server.Presence lists a channel's real
// subscribers, with the user and status each set, on one node and across two
// nodes that share a real redis-server.

func TestPresenceListsMembersWithTheirUserAndStatus(t *testing.T) {
	srv := startServer(t, Config{})
	ann := dial(t, srv, url.Values{"userId": {"ann"}})
	anon := dial(t, srv, nil)
	ann.subscribe("room")
	anon.subscribe("room")
	anon.write(map[string]any{"type": "presence", "channel": "room", "status": "away"})
	anon.nextOfType("presence")

	p, err := srv.Presence("room")
	if err != nil {
		t.Fatal(err)
	}
	if p.Channel != "room" || p.Total != 2 || p.Truncated {
		t.Fatalf("presence %+v", p)
	}
	byID := map[string]PresenceMember{}
	for _, m := range p.Members {
		byID[m.ClientID] = m
	}
	if got, want := byID[ann.clientID], (PresenceMember{ann.clientID, "ann", "online"}); got != want {
		t.Errorf("ann: %+v, want %+v", got, want)
	}
	if got, want := byID[anon.clientID], (PresenceMember{anon.clientID, "", "away"}); got != want {
		t.Errorf("anonymous: %+v, want %+v", got, want)
	}

	empty, err := srv.Presence("empty")
	if err != nil || empty.Total != 0 || len(empty.Members) != 0 || empty.Members == nil {
		t.Fatalf("empty channel: %+v, %v", empty, err)
	}
	if _, err := srv.Presence(""); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("empty name: %v", err)
	}
}

func TestPresenceOffIsAnError(t *testing.T) {
	srv := startServer(t, Config{Presence: &PresenceConfig{Enabled: Bool(false)}})
	if _, err := srv.Presence("room"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("presence off: %v", err)
	}
}

func TestPresenceSpansNodesThroughRedis(t *testing.T) {
	redis := startRedis(t)
	broker := &BrokerConfig{Redis: &RedisConfig{URL: redis.url(), Prefix: "go-presence:", TimeoutMS: 1000}}
	a := startServer(t, Config{Broker: broker})
	b := startServer(t, Config{Broker: broker})
	ann := dial(t, a, url.Values{"userId": {"ann"}})
	ann.write(map[string]any{"type": "subscribe", "channel": "room", "presence": true})
	ann.nextOfType("subscribed")
	bob := dial(t, b, url.Values{"userId": {"bob"}})
	bob.subscribe("room")
	for {
		event := ann.nextOfType("user_presence")
		if event.obj("data").str("clientId") == bob.clientID {
			if event.str("action") != "join" {
				t.Fatalf("first event about bob: %v", event)
			}
			break
		}
	}
	for _, node := range []*Server{a, b} {
		p, err := node.Presence("room")
		if err != nil {
			t.Fatal(err)
		}
		users := []string{}
		for _, m := range p.Members {
			users = append(users, m.UserID)
		}
		sort.Strings(users)
		if len(users) != 2 || users[0] != "ann" || users[1] != "bob" {
			t.Fatalf("members seen from a node: %v", users)
		}
	}
}
