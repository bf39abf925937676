package herald

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/cgo"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// testSecret is the HS256 secret of the auth tests (the core wants >= 16
// bytes).
const testSecret = "go-binding-test-secret-0123456789"

// fixture returns the absolute path of a file in the core's test fixtures
// (../../tests/fixtures relative to this package).
func fixture(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "tests", "fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return p
}

// hs256 signs claims as a compact HS256 JWT, by hand: base64url(header) "."
// base64url(payload) "." base64url(HMAC-SHA256(secret, the first two)).
func hs256(t testing.TB, secret string, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// userToken is a valid token for sub, expiring in 10 minutes, granting the
// channel patterns given.
func userToken(t testing.TB, sub string, channels ...string) string {
	t.Helper()
	claims := map[string]any{"sub": sub, "exp": time.Now().Add(10 * time.Minute).Unix()}
	if len(channels) > 0 {
		claims["channels"] = channels
	}
	return hs256(t, testSecret, claims)
}

func secureConfig() Config {
	return Config{Auth: &AuthConfig{Required: true, JWTSecret: testSecret}}
}

// dialRaw connects without expecting anything.
func dialRaw(t testing.TB, u string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, u, opts)
	if conn != nil {
		t.Cleanup(func() { _ = conn.CloseNow() })
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	return conn, resp, err
}

// expectPolicyClose reads from conn until the server closes it, and checks
// the close status is 1008 (policy violation) with the given reason ("" for
// any). It returns the frames received before the close.
func expectPolicyClose(t testing.TB, conn *websocket.Conn, reason string) []msg {
	t.Helper()
	var got []msg
	for i := 0; i < 1000; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		_, data, err := conn.Read(ctx)
		cancel()
		if err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("read ended with %v, want a close frame 1008 (frames before: %v)", err, got)
			}
			if ce.Code != websocket.StatusPolicyViolation {
				t.Fatalf("close status = %d %q, want 1008", ce.Code, ce.Reason)
			}
			if reason != "" && ce.Reason != reason {
				t.Errorf("close reason = %q, want %q", ce.Reason, reason)
			}
			return got
		}
		var m msg
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("frame %q: %v", data, err)
		}
		got = append(got, m)
	}
	t.Fatal("no close after 1000 frames")
	return nil
}

// expectUnauthorized connects to u and expects the server to complete the
// handshake, then close with 1008 "Unauthorized" before any message.
func expectUnauthorized(t testing.TB, u string, opts *websocket.DialOptions) {
	t.Helper()
	conn, _, err := dialRaw(t, u, opts)
	if err != nil {
		t.Fatalf("dial %s: %v (the handshake itself should succeed)", u, err)
	}
	if frames := expectPolicyClose(t, conn, "Unauthorized"); len(frames) != 0 {
		t.Errorf("got %v before the close, want nothing", frames)
	}
}

// expectError reads until an error message arrives and checks its code.
func (c *client) expectError(code string) msg {
	c.t.Helper()
	m := c.nextOfType("error")
	if got := m.obj("error").str("code"); got != code {
		c.t.Fatalf("error = %v, want code %q", m, code)
	}
	return m
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(b *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitLog waits until the log contains substr.
func waitLog(t testing.TB, b *syncBuffer, substr string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(b.String(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("log never contained %q; log:\n%s", substr, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitStats polls Stats until pred holds.
func waitStats(t testing.TB, srv *Server, what string, pred func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		st, err := srv.Stats()
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if pred(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never showed %s: %s", what, st.Raw)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConfigJSONSecurity(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Auth: &AuthConfig{}, RateLimit: &RateLimitConfig{}}, `{"auth":{},"rate_limit":{}}`},
		{Config{Logger: slog.Default()}, `{}`},
		{Config{
			Auth: &AuthConfig{Required: true, JWTSecret: "s", JWTPublicKey: "pem", JWTIssuer: "iss", JWTAudience: "aud",
				JWTLeewaySeconds: Int(5), PublicChannels: []string{"news", "public:*"}, AuthorizerTimeoutMS: 250},
			AllowedOrigins:            []string{"https://a.example"},
			MaxConnectionsPerIP:       Int(3),
			MaxSubscriptionsPerClient: 7,
			RateLimit:                 &RateLimitConfig{MessagesPerSecond: Int(10), Burst: 20, MaxViolations: Int(2)},
			TLS:                       &TLSConfig{CertFile: "c.pem", KeyFile: "k.pem"},
		}, `{"auth":{"required":true,"jwt_secret":"s","jwt_public_key":"pem","jwt_issuer":"iss","jwt_audience":"aud",` +
			`"jwt_leeway_s":5,"public_channels":["news","public:*"],"authorizer_timeout_ms":250},` +
			`"allowed_origins":["https://a.example"],"max_connections_per_ip":3,"max_subscriptions_per_client":7,` +
			`"rate_limit":{"messages_per_second":10,"burst":20,"max_violations":2},"tls":{"cert":"c.pem","key":"k.pem"}}`},
		// Zeros that mean something are sent.
		{Config{
			Auth:                &AuthConfig{JWTLeewaySeconds: Int(0)},
			MaxConnectionsPerIP: Int(0),
			RateLimit:           &RateLimitConfig{MessagesPerSecond: Int(0), MaxViolations: Int(0)},
		}, `{"auth":{"jwt_leeway_s":0},"max_connections_per_ip":0,"rate_limit":{"messages_per_second":0,"max_violations":0}}`},
	}
	for _, c := range cases {
		got, err := c.cfg.configJSON()
		if err != nil || string(got) != c.want {
			t.Errorf("configJSON = %s, %v\nwant %s", got, err, c.want)
		}
	}
}

func TestConfigSecurityFieldsAccepted(t *testing.T) {
	// Every security key the binding can send must be known to the core.
	pub, err := os.ReadFile(fixture(t, "rsa_public.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, Config{
		Auth: &AuthConfig{Required: true, JWTSecret: testSecret, JWTPublicKey: string(pub), JWTIssuer: "iss",
			JWTAudience: "aud", JWTLeewaySeconds: Int(0), PublicChannels: []string{"news"}, AuthorizerTimeoutMS: 1000},
		AllowedOrigins:            []string{"https://app.example"},
		MaxConnectionsPerIP:       Int(0),
		MaxSubscriptionsPerClient: 10,
		RateLimit:                 &RateLimitConfig{MessagesPerSecond: Int(0), Burst: 1, MaxViolations: Int(0)},
		TLS:                       &TLSConfig{CertFile: fixture(t, "server_cert.pem"), KeyFile: fixture(t, "server_key.pem")},
	})
	if _, err := srv.Stats(); err != nil {
		t.Fatal(err)
	}
}

// getStatsHTTP fetches GET /api/ws/stats with the given Authorization header
// ("" sends none) and returns the status, the WWW-Authenticate header and the body.
func getStatsHTTP(t testing.TB, srv *Server, authorization string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/api/ws/stats", srv.Port()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	client := http.Client{Timeout: waitTimeout}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(body)
}

// TestAdminToken: in secure mode the HTTP stats, which name every client,
// answer only to Config.AdminToken, and always 401 without one configured.
func TestAdminToken(t *testing.T) {
	const admin = "admin-token-3e8d1c"
	tok := userToken(t, "alice")
	for _, adminToken := range []string{"", admin} {
		cfg := secureConfig()
		cfg.AdminToken = adminToken
		srv := startServer(t, cfg)
		c := dial(t, srv, url.Values{"token": {tok}})
		for _, authorization := range []string{"", "Bearer " + tok, "Bearer " + admin[:len(admin)-1], "Basic " + admin} {
			status, challenge, body := getStatsHTTP(t, srv, authorization)
			if status != http.StatusUnauthorized || !strings.HasPrefix(challenge, "Bearer") {
				t.Errorf("admin_token %q, Authorization %q: %d %q", adminToken, authorization, status, challenge)
			}
			if strings.Contains(body, c.clientID) {
				t.Errorf("a refusal names the client: %s", body)
			}
		}
		if adminToken != "" {
			status, _, body := getStatsHTTP(t, srv, "Bearer "+admin)
			if status != http.StatusOK || !strings.Contains(body, c.clientID) {
				t.Errorf("with the admin token: %d %s", status, body)
			}
		}
		// Server.Stats is in-process and needs no token.
		st, err := srv.Stats()
		if err != nil || len(st.Clients) != 1 || st.Clients[0].ID != c.clientID {
			t.Errorf("Stats() = %+v, %v", st, err)
		}
	}
}

func TestConfigSecurityInvalid(t *testing.T) {
	for name, cfg := range map[string]Config{
		"short jwt secret":      {Auth: &AuthConfig{JWTSecret: "short"}},
		"bad public key":        {Auth: &AuthConfig{JWTPublicKey: "not a pem"}},
		"negative leeway":       {Auth: &AuthConfig{JWTLeewaySeconds: Int(-1)}},
		"negative per-IP limit": {MaxConnectionsPerIP: Int(-1)},
		"negative burst":        {RateLimit: &RateLimitConfig{MessagesPerSecond: Int(5), Burst: -1}},
		"missing tls files":     {TLS: &TLSConfig{CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem"}},
		"empty tls config":      {TLS: &TLSConfig{}},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.Port = Int(0)
			srv, err := Start(cfg)
			if err == nil {
				srv.Close(context.Background())
				t.Fatal("Start succeeded")
			}
			mustIs(t, "Start", err, ErrInvalidConfig)
		})
	}
}

func TestJWTValidTokenReceivesUserBroadcast(t *testing.T) {
	srv := startServer(t, secureConfig())
	tok := userToken(t, "alice")

	// ?token=, with a userId that secure mode must ignore.
	a := dial(t, srv, url.Values{"token": {tok}, "userId": {"mallory"}})
	ev := waitEvent(t, srv, "connected", func(ev Event) bool { return ev.Type == EventConnected && ev.ClientID == a.clientID })
	if ev.UserID != "alice" {
		t.Errorf("connected event userId = %q, want alice (from the token)", ev.UserID)
	}
	// "Authorization: Bearer" header.
	b := dialURL(t, wsURL("ws", srv, nil), &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}},
	})

	// mallory's message must not arrive; alice's, sent after it, must be the
	// next message on both connections.
	if err := srv.BroadcastToUser("mallory", map[string]any{"type": "secret"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.BroadcastToUser("alice", map[string]any{"type": "for_alice", "n": 1}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{a, b} {
		m := c.nextOfType("for_alice")
		if m.num("n") != 1 {
			t.Errorf("got %v", m)
		}
	}
	st, err := srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.AuthFailures != 0 {
		t.Errorf("AuthFailures = %d, want 0", st.AuthFailures)
	}
}

// The JWT rules (expiry, nbf, algorithms, tampering, issuer and audience,
// channel patterns) are tested in the core (tests/auth.rs); these tests check
// that the settings reach it.
func TestJWTRejectedTokens(t *testing.T) {
	srv := startServer(t, secureConfig())
	forged := hs256(t, "another-secret-of-16-bytes!", map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	// auth.required: no token; auth.jwt_secret: a token signed with another key.
	expectUnauthorized(t, wsURL("ws", srv, url.Values{"userId": {"alice"}}), nil)
	expectUnauthorized(t, wsURL("ws", srv, url.Values{"token": {forged}}), nil)
	st, err := srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.AuthFailures != 2 || st.ActiveConnections != 0 {
		t.Errorf("AuthFailures = %d, ActiveConnections = %d; want 2 and 0", st.AuthFailures, st.ActiveConnections)
	}
}

func TestJWTChannelPermissions(t *testing.T) {
	cfg := secureConfig()
	cfg.Auth.PublicChannels = []string{"news", "public:*"}
	srv := startServer(t, cfg)
	a := dial(t, srv, url.Values{"token": {userToken(t, "alice", "session:a-*")}})

	// The token's channels claim and AuthConfig.PublicChannels reach the core.
	a.subscribeSession("a-1")
	a.subscribe("public:x")
	a.write(map[string]any{"type": "subscribe", "channel": "team:2"})
	a.expectError("forbidden")
	// Still connected.
	a.write(map[string]any{"type": "ping"})
	a.nextOfType("pong")

	st, err := srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Forbidden != 1 {
		t.Errorf("Forbidden = %d, want 1", st.Forbidden)
	}
}

// authLog records the requests an authorizer saw.
type authLog struct {
	mu   sync.Mutex
	reqs []AuthRequest
}

func (l *authLog) add(r AuthRequest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, r)
}

func (l *authLog) find(pred func(AuthRequest) bool) (AuthRequest, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.reqs {
		if pred(r) {
			return r, true
		}
	}
	return AuthRequest{}, false
}

func TestAuthorizerConnectAndSubscribe(t *testing.T) {
	srv := startServer(t, Config{})
	var seen authLog
	err := srv.SetAuthorizer(func(ctx context.Context, req AuthRequest) AuthDecision {
		seen.add(req)
		if _, ok := ctx.Deadline(); !ok {
			t.Errorf("authorizer context has no deadline")
		}
		switch req.Type {
		case AuthConnect:
			if req.Token == "good" {
				return AuthDecision{Allow: true, UserID: "alice", Channels: []string{"room:*", "session:" + req.Query["sessionId"]}}
			}
			return AuthDecision{Allow: false, Reason: "bad token " + req.Token}
		case AuthSubscribe:
			return AuthDecision{Allow: req.Channel == "granted-by-host"}
		}
		t.Errorf("unexpected request %+v", req)
		return AuthDecision{}
	})
	if err != nil {
		t.Fatal(err)
	}

	// Denied connects: a wrong token, and no token at all.
	expectUnauthorized(t, wsURL("ws", srv, url.Values{"token": {"bad"}}), nil)
	expectUnauthorized(t, wsURL("ws", srv, url.Values{"userId": {"alice"}}), nil)

	c := dialURL(t, wsURL("ws", srv, url.Values{"token": {"good"}, "sessionId": {"s1"}}), &websocket.DialOptions{
		HTTPHeader: http.Header{"X-Trace": {"abc"}, "Origin": {"https://app.example"}},
	})
	req, ok := seen.find(func(r AuthRequest) bool { return r.Type == AuthConnect && r.Token == "good" })
	if !ok {
		t.Fatal("no connect request with the token")
	}
	if req.ID == 0 || req.Query["token"] != "good" || req.Query["sessionId"] != "s1" || req.Headers["x-trace"] != "abc" ||
		req.Origin != "https://app.example" || !strings.HasPrefix(req.RemoteAddr, "127.0.0.1:") || req.TokenUserID != "" {
		t.Errorf("connect request = %+v", req)
	}
	if len(req.Raw) == 0 || !json.Valid(req.Raw) {
		t.Errorf("Raw = %q", req.Raw)
	}

	// The authorizer's userId is the client's user, and the granted
	// session of the URL is subscribed.
	if err := srv.BroadcastToUser("alice", map[string]any{"type": "for_alice"}); err != nil {
		t.Fatal(err)
	}
	c.nextOfType("for_alice")
	if err := srv.NotifyAIComplete("s1", map[string]any{"ok": true}); err != nil {
		t.Fatal(err)
	}
	c.nextOfType("ai_complete")

	// Granted on connect: no further question.
	c.subscribe("room:7")
	if r, asked := seen.find(func(r AuthRequest) bool { return r.Type == AuthSubscribe && r.Channel == "room:7" }); asked {
		t.Errorf("authorizer asked about a granted channel: %+v", r)
	}
	// Not granted: the authorizer decides.
	c.subscribe("granted-by-host")
	req, ok = seen.find(func(r AuthRequest) bool { return r.Type == AuthSubscribe && r.Channel == "granted-by-host" })
	if !ok || req.ClientID != c.clientID || req.UserID != "alice" || req.ID == 0 {
		t.Errorf("subscribe request = %+v (found %v), want client %s user alice", req, ok, c.clientID)
	}
	c.write(map[string]any{"type": "subscribe", "channel": "nope"})
	c.expectError("forbidden")
	// Another user's channel is refused without asking.
	c.write(map[string]any{"type": "subscribe", "channel": "user:bob"})
	c.expectError("forbidden")
	if r, asked := seen.find(func(r AuthRequest) bool { return r.Channel == "user:bob" }); asked {
		t.Errorf("authorizer asked about another user's channel: %+v", r)
	}

	st, err := srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.AuthFailures != 2 || st.Forbidden != 2 {
		t.Errorf("AuthFailures = %d, Forbidden = %d; want 2 and 2", st.AuthFailures, st.Forbidden)
	}
}

func TestAuthorizerWithJWT(t *testing.T) {
	srv := startServer(t, Config{Auth: &AuthConfig{JWTSecret: testSecret}})
	err := srv.SetAuthorizer(func(ctx context.Context, req AuthRequest) AuthDecision {
		if req.Type != AuthConnect {
			return AuthDecision{}
		}
		// Only verified tokens; keep their user, add a channel.
		return AuthDecision{Allow: req.TokenUserID != "", Channels: []string{"extra"}}
	})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv, url.Values{"token": {userToken(t, "carol")}})
	c.subscribe("extra")
	if err := srv.BroadcastToUser("carol", map[string]any{"type": "for_carol"}); err != nil {
		t.Fatal(err)
	}
	c.nextOfType("for_carol")
	expectUnauthorized(t, wsURL("ws", srv, url.Values{"token": {"opaque"}}), nil)
}

func TestAuthorizerPanicDenies(t *testing.T) {
	var logs syncBuffer
	srv := startServer(t, Config{Logger: testLogger(&logs)})
	if err := srv.SetAuthorizer(func(ctx context.Context, req AuthRequest) AuthDecision {
		panic("authorizer exploded")
	}); err != nil {
		t.Fatal(err)
	}
	expectUnauthorized(t, wsURL("ws", srv, nil), nil)
	waitLog(t, &logs, "authorizer exploded")
	if !strings.Contains(logs.String(), "panicked") {
		t.Errorf("log = %s", logs.String())
	}
	// The server keeps working.
	if err := srv.SetAuthorizer(func(context.Context, AuthRequest) AuthDecision { return AuthDecision{Allow: true} }); err != nil {
		t.Fatal(err)
	}
	dial(t, srv, nil)
}

func TestAuthorizerTimeout(t *testing.T) {
	var logs syncBuffer
	srv := startServer(t, Config{Auth: &AuthConfig{AuthorizerTimeoutMS: 200}, Logger: testLogger(&logs)})
	type result struct {
		hasDeadline bool
		err         error
	}
	results := make(chan result, 1)
	if err := srv.SetAuthorizer(func(ctx context.Context, req AuthRequest) AuthDecision {
		_, ok := ctx.Deadline()
		<-ctx.Done() // too slow: only answers when the deadline has passed
		results <- result{ok, ctx.Err()}
		return AuthDecision{Allow: true}
	}); err != nil {
		t.Fatal(err)
	}
	expectUnauthorized(t, wsURL("ws", srv, nil), nil)
	select {
	case r := <-results:
		if !r.hasDeadline || !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("authorizer ctx: deadline %v, err %v; want a deadline that expires", r.hasDeadline, r.err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("authorizer never returned")
	}
	waitLog(t, &logs, "after its timeout")
}

func TestAuthorizerInvalidDecisionDenied(t *testing.T) {
	var logs syncBuffer
	srv := startServer(t, Config{Logger: testLogger(&logs)})
	if err := srv.SetAuthorizer(func(ctx context.Context, req AuthRequest) AuthDecision {
		return AuthDecision{Allow: true, UserID: "bad\nuser"} // the core rejects control characters
	}); err != nil {
		t.Fatal(err)
	}
	expectUnauthorized(t, wsURL("ws", srv, nil), nil)
	waitLog(t, &logs, "rejected the authorizer's decision")
}

func TestAuthorizeReplyStatuses(t *testing.T) {
	// Direct calls of herald_authorize_reply for requests that do not exist.
	srv := startServer(t, Config{})
	cases := []struct {
		decision string
		want     error
	}{
		{`{"allow":true}`, ErrInvalidArgument},             // no such request
		{`{"allow":`, ErrInvalidJSON},                      // not JSON
		{`{"allow":true,"extra":1}`, ErrInvalidJSON},       // unknown field
		{`{"allow":true,"userId":"a\nb"}`, ErrInvalidJSON}, // bad userId
		{`[true,null,[],null]`, ErrInvalidJSON},            // not an object
	}
	for _, c := range cases {
		err := srv.authorizeReply(987654321, cString([]byte(c.decision)))
		mustIs(t, c.decision, err, c.want)
	}
}

func TestAuthorizerClearAndReplace(t *testing.T) {
	srv := startServer(t, Config{})
	deny := func(context.Context, AuthRequest) AuthDecision { return AuthDecision{Reason: "no"} }
	allow := func(context.Context, AuthRequest) AuthDecision { return AuthDecision{Allow: true, UserID: "host-user"} }

	if err := srv.SetAuthorizer(deny); err != nil {
		t.Fatal(err)
	}
	expectUnauthorized(t, wsURL("ws", srv, nil), nil)

	if err := srv.SetAuthorizer(allow); err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv, url.Values{"userId": {"ignored"}})
	if err := srv.BroadcastToUser("host-user", map[string]any{"type": "hu"}); err != nil {
		t.Fatal(err)
	}
	c.nextOfType("hu")

	// Cleared: back to open mode, where ?userId names the user.
	if err := srv.SetAuthorizer(nil); err != nil {
		t.Fatal(err)
	}
	d := dial(t, srv, url.Values{"userId": {"dave"}})
	if err := srv.BroadcastToUser("dave", map[string]any{"type": "for_dave"}); err != nil {
		t.Fatal(err)
	}
	d.nextOfType("for_dave")
	d.subscribe("anything")

	// Handles: the core handed back the two replaced (deny, allow) once it was
	// done with them (no call is under way); Close hands back the last one.
	if n := srv.authHandles.Load(); n != 0 {
		t.Errorf("%d authorizer handles still owned by the core after clearing; want 0", n)
	}
	if err := srv.SetAuthorizer(allow); err != nil {
		t.Fatal(err)
	}
	if n := srv.authHandles.Load(); n != 1 {
		t.Errorf("%d authorizer handles owned by the core; want 1", n)
	}
	c.conn.Close(websocket.StatusNormalClosure, "")
	d.conn.Close(websocket.StatusNormalClosure, "")
	if err := srv.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := srv.authHandles.Load(); n != 0 {
		t.Errorf("%d authorizer handles still owned by the core after Close; want 0", n)
	}
	mustIs(t, "SetAuthorizer after Close", srv.SetAuthorizer(allow), ErrClosed)
	mustIs(t, "clear after Close", srv.SetAuthorizer(nil), ErrClosed)
	var nilSrv *Server
	mustIs(t, "nil server", nilSrv.SetAuthorizer(allow), ErrClosed)
}

func TestAuthorizerCloseWhileRunning(t *testing.T) {
	srv, err := Start(Config{Port: Int(0), Auth: &AuthConfig{AuthorizerTimeoutMS: 60000}})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	if err := srv.SetAuthorizer(func(ctx context.Context, req AuthRequest) AuthDecision {
		started <- struct{}{}
		<-ctx.Done() // blocks until Close
		ended <- ctx.Err()
		return AuthDecision{Allow: true}
	}); err != nil {
		t.Fatal(err)
	}
	dialed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		conn, _, err := websocket.Dial(ctx, wsURL("ws", srv, nil), nil)
		if err == nil {
			_, _, err = conn.Read(ctx) // ends when the server goes away
			conn.CloseNow()
		}
		dialed <- err
	}()
	select {
	case <-started:
	case <-time.After(waitTimeout):
		t.Fatal("authorizer never called")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := srv.Close(ctx); err != nil && !errors.Is(err, ErrTimeout) {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("authorizer ctx error = %v, want context.Canceled", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("authorizer ctx was not cancelled by Close")
	}
	select {
	case err := <-dialed:
		if err == nil {
			t.Error("client was served after Close")
		}
	case <-time.After(waitTimeout):
		t.Fatal("client never finished")
	}
}

func TestAuthorizerConcurrentSwapsConnectsAndClose(t *testing.T) {
	// Many goroutines install, replace and clear authorizers while clients
	// connect, then Close races with all of it. Run with -race.
	for round := 0; round < 3; round++ {
		srv, err := Start(Config{Port: Int(0), Auth: &AuthConfig{AuthorizerTimeoutMS: 2000}})
		if err != nil {
			t.Fatal(err)
		}
		var calls atomic.Int64
		fn := func(ctx context.Context, req AuthRequest) AuthDecision {
			calls.Add(1)
			if req.Type == AuthConnect && strings.HasSuffix(req.Query["userId"], "slow") {
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
			return AuthDecision{Allow: true}
		}
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					var err error
					if (i+g)%3 == 0 {
						err = srv.SetAuthorizer(nil)
					} else {
						err = srv.SetAuthorizer(fn)
					}
					if err != nil && !errors.Is(err, ErrClosed) {
						t.Errorf("SetAuthorizer: %v", err)
						return
					}
				}
			}(g)
		}
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < 5; i++ {
					ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
					q := url.Values{"userId": {fmt.Sprintf("u%d-%d", g, i)}}
					if i%2 == 0 {
						q.Set("userId", fmt.Sprintf("u%d-%d-slow", g, i))
					}
					conn, _, err := websocket.Dial(ctx, wsURL("ws", srv, q), nil)
					if err == nil {
						_, _, _ = conn.Read(ctx) // greeting, or a close
						conn.CloseNow()
					}
					cancel()
				}
			}(g)
		}
		if round > 0 {
			// Close while everything runs.
			time.Sleep(time.Duration(round) * 20 * time.Millisecond)
		}
		closeErr := make(chan error, 1)
		go func() {
			if round == 0 {
				wg.Wait()
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			closeErr <- srv.Close(ctx)
		}()
		wg.Wait()
		if err := <-closeErr; err != nil && !errors.Is(err, ErrTimeout) {
			t.Errorf("round %d: Close: %v", round, err)
		}
		t.Logf("round %d: %d authorizer calls", round, calls.Load())
		if n := srv.authHandles.Load(); n != 0 {
			t.Errorf("round %d: %d authorizer handles left after Close", round, n)
		}
	}
}

func TestOriginNotAllowed(t *testing.T) {
	srv := startServer(t, Config{AllowedOrigins: []string{"https://app.example"}})
	_, resp, err := dialRaw(t, wsURL("ws", srv, nil), &websocket.DialOptions{
		HTTPHeader: http.Header{"Origin": {"https://evil.example"}},
	})
	if err == nil {
		t.Fatal("handshake with a foreign Origin succeeded")
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("response = %+v, err %v; want HTTP 403", resp, err)
	}
	// The allowed origin, and a client without an Origin header, connect.
	dialURL(t, wsURL("ws", srv, nil), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://app.example"}}})
	dial(t, srv, nil)
	st, err := srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.OriginRejected != 1 {
		t.Errorf("OriginRejected = %d, want 1", st.OriginRejected)
	}
}

// tlsClient trusts only the test CA.
func tlsClient(t testing.TB) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(fixture(t, "ca_cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("ca_cert.pem holds no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitTimeout}
}

func TestTLS(t *testing.T) {
	cfg := secureConfig()
	cfg.TLS = &TLSConfig{CertFile: fixture(t, "server_cert.pem"), KeyFile: fixture(t, "server_key.pem")}
	srv := startServer(t, cfg)
	hc := tlsClient(t)

	c := dialURL(t, wsURL("wss", srv, url.Values{"token": {userToken(t, "tess", "session:*")}}), &websocket.DialOptions{HTTPClient: hc})
	c.subscribeSession("tls-1")
	if err := srv.NotifyAIProgress("tls-1", map[string]any{"pct": 50}); err != nil {
		t.Fatal(err)
	}
	if m := c.nextOfType("ai_progress"); m.obj("progress").num("pct") != 50 {
		t.Errorf("got %v", m)
	}
	// Also by host name, and the HTTP endpoints over https.
	u := fmt.Sprintf("wss://localhost:%d/ws?token=%s", srv.Port(), userToken(t, "tess"))
	dialURL(t, u, &websocket.DialOptions{HTTPClient: hc})
	resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d/healthz", srv.Port()))
	if err != nil {
		t.Fatalf("GET https /healthz: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET https /healthz = %d", resp.StatusCode)
	}

	// A client that does not trust the CA, and a plain ws:// client, fail.
	if _, _, err := dialRaw(t, wsURL("wss", srv, nil), nil); err == nil {
		t.Error("wss without the test CA succeeded")
	}
	if _, _, err := dialRaw(t, wsURL("ws", srv, nil), nil); err == nil {
		t.Error("plain ws:// to a TLS server succeeded")
	}
	waitStats(t, srv, "tlsFailures >= 2", func(st Stats) bool { return st.TLSFailures >= 2 })
}

func TestMaxConnectionsPerIP(t *testing.T) {
	const limit, attempts = 3, 20
	srv := startServer(t, Config{MaxConnectionsPerIP: Int(limit)})
	first := dial(t, srv, nil)
	first.subscribe("ch")

	var extra []*websocket.Conn
	failures := 0
	for i := 0; i < attempts; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		conn, _, err := websocket.Dial(ctx, wsURL("ws", srv, nil), nil)
		cancel()
		if err != nil {
			failures++
			continue
		}
		extra = append(extra, conn)
	}
	t.Logf("%d of %d extra connections accepted, %d refused", len(extra), attempts, failures)
	if len(extra) > limit-1 {
		t.Errorf("%d extra connections accepted, want at most %d", len(extra), limit-1)
	}
	if failures < attempts-(limit-1) {
		t.Errorf("%d refusals, want at least %d", failures, attempts-(limit-1))
	}
	st, err := srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.RejectedPerIP < uint64(failures) || st.OpenSockets > limit {
		t.Errorf("RejectedPerIP = %d, OpenSockets = %d; want >= %d and <= %d", st.RejectedPerIP, st.OpenSockets, failures, limit)
	}

	// The first client is still served.
	if err := srv.Publish("ch", map[string]any{"type": "still_here"}); err != nil {
		t.Fatal(err)
	}
	first.nextOfType("still_here")

	// Once the extra clients leave, new ones are accepted again.
	for _, conn := range extra {
		conn.Close(websocket.StatusNormalClosure, "")
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		conn, _, err := websocket.Dial(ctx, wsURL("ws", srv, nil), nil)
		cancel()
		if err == nil {
			conn.CloseNow()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection accepted after the others left: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRateLimitFlood(t *testing.T) {
	srv := startServer(t, Config{RateLimit: &RateLimitConfig{MessagesPerSecond: Int(1), Burst: 2, MaxViolations: Int(3)}})
	c := dial(t, srv, nil)
	pongs, limited := 0, 0
	var closeErr error
	// One message, one answer: a pong, a rate_limited error, or the close.
	for i := 0; i < 200 && closeErr == nil; i++ {
		c.write(map[string]any{"type": "ping"})
		m, err := c.read()
		if err != nil {
			closeErr = err
			break
		}
		switch {
		case m.str("type") == "pong":
			pongs++
		case m.str("type") == "error" && m.obj("error").str("code") == "rate_limited":
			limited++
		default:
			t.Fatalf("unexpected %v", m)
		}
	}
	if closeErr == nil {
		t.Fatal("the flooding client was never closed")
	}
	if status := websocket.CloseStatus(closeErr); status != websocket.StatusPolicyViolation {
		t.Fatalf("closed with %v (status %d), want 1008", closeErr, status)
	}
	t.Logf("%d pongs and %d rate_limited errors before the close", pongs, limited)
	if pongs < 1 || limited < 1 {
		t.Errorf("pongs %d, rate_limited %d; want both >= 1", pongs, limited)
	}
	st, err := srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.RateLimited != uint64(limited) || st.RateLimitCloses != 1 {
		t.Errorf("RateLimited = %d, RateLimitCloses = %d; want %d and 1", st.RateLimited, st.RateLimitCloses, limited)
	}

	// With the limit off, the same flood is answered in full.
	off := startServer(t, Config{RateLimit: &RateLimitConfig{MessagesPerSecond: Int(0)}})
	d := dial(t, off, nil)
	for i := 0; i < 200; i++ {
		d.write(map[string]any{"type": "ping"})
	}
	for i := 0; i < 200; i++ {
		d.nextOfType("pong")
	}
}

func TestParseStatsSecurity(t *testing.T) {
	raw := `{"authFailures":1,"forbidden":2,"originRejected":3,"rateLimited":4,"rateLimitCloses":5,` +
		`"rejectedPerIp":6,"openSockets":7,"handshakeTimeouts":8,"tlsFailures":9}`
	st, err := parseStats([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	got := []uint64{st.AuthFailures, st.Forbidden, st.OriginRejected, st.RateLimited, st.RateLimitCloses,
		st.RejectedPerIP, st.OpenSockets, st.HandshakeTimeouts, st.TLSFailures}
	for i, v := range got {
		if v != uint64(i+1) {
			t.Errorf("field %d = %d, want %d (%+v)", i, v, i+1, st)
		}
	}
	// Every key is in the core's real document.
	srv := startServer(t, Config{})
	dial(t, srv, nil)
	real, err := srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(real.Raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"authFailures", "forbidden", "originRejected", "rateLimited", "rateLimitCloses",
		"rejectedPerIp", "openSockets", "handshakeTimeouts", "tlsFailures"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("stats have no %q: %s", k, real.Raw)
		}
	}
	if real.OpenSockets < 1 {
		t.Errorf("OpenSockets = %d with a client connected", real.OpenSockets)
	}
}

func TestAuthorizerBlockingDoesNotHoldOthers(t *testing.T) {
	srv := startServer(t, Config{Auth: &AuthConfig{AuthorizerTimeoutMS: 60000}})
	release := make(chan struct{})
	slowAsked := make(chan struct{})
	if err := srv.SetAuthorizer(func(ctx context.Context, req AuthRequest) AuthDecision {
		if req.Query["userId"] == "slow" {
			close(slowAsked)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return AuthDecision{Allow: true, UserID: req.Query["userId"]}
	}); err != nil {
		t.Fatal(err)
	}
	slow := make(chan *client, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		conn, _, err := websocket.Dial(ctx, wsURL("ws", srv, url.Values{"userId": {"slow"}}), nil)
		if err != nil {
			t.Errorf("slow dial: %v", err)
			slow <- nil
			return
		}
		slow <- &client{t: t, conn: conn}
	}()
	select {
	case <-slowAsked:
	case <-time.After(waitTimeout):
		t.Fatal("authorizer not asked for the slow client")
	}
	// While the authorizer blocks for one client, others are decided.
	for i := 0; i < 5; i++ {
		dial(t, srv, url.Values{"userId": {fmt.Sprintf("fast%d", i)}})
	}
	close(release)
	c := <-slow
	if c == nil {
		t.FailNow()
	}
	defer c.conn.CloseNow()
	if m := c.next(); m.str("type") != "connection" {
		t.Fatalf("slow client got %v, want its greeting", m)
	}
}

func TestAuthorizeAfterClose(t *testing.T) {
	// A request that reaches a closed server does not run the function.
	called := make(chan struct{}, 1)
	srv, err := Start(Config{Port: Int(0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	reg := &authReg{srv: srv, fn: func(context.Context, AuthRequest) AuthDecision {
		called <- struct{}{}
		return AuthDecision{Allow: true}
	}}
	h := cgo.NewHandle(reg)
	defer h.Delete()
	authorize(h, 3, []byte(`{"type":"connect","id":3}`))
	reg.serve(4, []byte(`{"type":"connect","id":4}`), time.Now().Add(time.Second))
	select {
	case <-called:
		t.Error("authorizer called for a closed server")
	case <-time.After(50 * time.Millisecond):
	}
	// Installing on a closed server: refused, and the handle is not leaked.
	mustIs(t, "SetAuthorizer after Close", srv.SetAuthorizer(reg.fn), ErrClosed)
	if n := srv.authHandles.Load(); n != 0 {
		t.Errorf("%d authorizer handles after a refused install; want 0", n)
	}
}

func TestParseAuthRequest(t *testing.T) {
	req, err := parseAuthRequest([]byte(`{"type":"connect","id":7,"token":null,"tokenUserId":null,` +
		`"query":{"a":"1"},"headers":{"host":"h"},"origin":null,"remoteAddr":"127.0.0.1:5"}`))
	if err != nil || req.Type != AuthConnect || req.ID != 7 || req.Token != "" || req.Query["a"] != "1" ||
		req.Headers["host"] != "h" || req.RemoteAddr != "127.0.0.1:5" {
		t.Errorf("connect = %+v, %v", req, err)
	}
	req, err = parseAuthRequest([]byte(`{"type":"subscribe","id":8,"clientId":"c","userId":null,"channel":"x"}`))
	if err != nil || req.Type != AuthSubscribe || req.ClientID != "c" || req.UserID != "" || req.Channel != "x" {
		t.Errorf("subscribe = %+v, %v", req, err)
	}
	for _, bad := range []string{`[]`, `{}`, `{"type":1}`, `nope`} {
		if _, err := parseAuthRequest([]byte(bad)); err == nil {
			t.Errorf("parseAuthRequest(%s) succeeded", bad)
		}
	}
}
