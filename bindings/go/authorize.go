package herald

/*
#include <stdint.h>
#include "herald.h"

// Defined in Go (authorize_export.go).
extern void heraldGoAuthorize(uintptr_t handle, uint64_t request_id, char *request_json);
extern void heraldGoAuthorizerDropped(uintptr_t handle);

// The herald_authorize_callback the core calls. user_data is not a pointer:
// it carries the integer value of a runtime/cgo.Handle.
static void herald_go_authorize(void *user_data, uint64_t request_id, const char *request_json) {
	heraldGoAuthorize((uintptr_t)user_data, request_id, (char *)request_json);
}

// The herald_drop_callback: the core calls it once, after the last call of
// herald_go_authorize with this handle.
static void herald_go_authorizer_dropped(void *user_data) {
	heraldGoAuthorizerDropped((uintptr_t)user_data);
}

// Installs herald_go_authorize with handle as user_data, or clears the
// authorizer when handle is 0 (cgo handles are never 0). The core owns the
// handle from here: it calls herald_go_authorizer_dropped once, even if this
// call fails.
static herald_status herald_go_set_authorizer(herald_server *server, uintptr_t handle) {
	if (handle == 0) {
		return herald_set_authorizer(server, NULL, NULL, NULL);
	}
	return herald_set_authorizer(server, herald_go_authorize, (void *)handle, herald_go_authorizer_dropped);
}
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/cgo"
	"runtime/debug"
	"time"
)

// DefaultAuthorizerTimeout is the core's default for
// AuthConfig.AuthorizerTimeoutMS.
const DefaultAuthorizerTimeout = 5 * time.Second

// AuthRequestType is the Type of an AuthRequest.
type AuthRequestType string

// The kinds of authorization request.
const (
	// AuthConnect: a client completed the WebSocket handshake and the
	// server asks whether it may stay connected, and as which user.
	AuthConnect AuthRequestType = "connect"
	// AuthSubscribe: a client asked to subscribe to a channel that neither
	// its token, the channels granted on connect nor
	// AuthConfig.PublicChannels allow.
	AuthSubscribe AuthRequestType = "subscribe"
)

// AuthRequest is a question from the core to the authorizer installed with
// Server.SetAuthorizer. Fields that do not apply to the request's Type, or
// that the core reported as null, are left at their zero value.
type AuthRequest struct {
	// Type is AuthConnect or AuthSubscribe.
	Type AuthRequestType
	// ID is the core's request ID (informational: the binding replies).
	ID uint64

	// Token is the client's ?token= query parameter or "Authorization:
	// Bearer" token, verbatim; "" if it sent none (AuthConnect).
	Token string
	// TokenUserID is the "sub" of Token when the core verified it as a JWT
	// with a configured key; "" otherwise (AuthConnect).
	TokenUserID string
	// Query holds the handshake's query parameters (AuthConnect).
	Query map[string]string
	// Headers holds the handshake's request headers, names in lower case
	// (AuthConnect).
	Headers map[string]string
	// Origin is the handshake's Origin header, "" if none (AuthConnect).
	Origin string
	// RemoteAddr is the client's address, "ip:port" (AuthConnect).
	RemoteAddr string

	// ClientID is the client asking to subscribe (AuthSubscribe).
	ClientID string
	// UserID is that client's user, "" if it has none (AuthSubscribe).
	UserID string
	// Channel is the channel asked for; sessions are "session:ID"
	// (AuthSubscribe).
	Channel string
	// Action is what the client asked (AuthSubscribe): "subscribe";
	// "presence" to see who is in Channel without subscribing (allowing it
	// does not subscribe the client); or "cancel" when the client asks to
	// cancel a job of the session Channel names.
	Action string

	// TimeoutMs is how long the core waits for the answer before it denies
	// the request (auth.authorizer_timeout_ms).
	TimeoutMs uint64

	// Raw is the request exactly as the core reported it, including any
	// field this version of the binding does not map.
	Raw json.RawMessage
}

// AuthDecision is an authorizer's answer. The zero value denies.
type AuthDecision struct {
	// Allow admits the connection or the subscription.
	Allow bool `json:"allow"`
	// UserID, on an allowed AuthConnect, names the client's user (it then
	// receives BroadcastToUser(UserID, ...) and may subscribe to
	// "user:"+UserID). "" keeps the token's "sub", if any.
	UserID string `json:"userId,omitempty"`
	// Channels, on an allowed AuthConnect, lists channel patterns ("*"
	// matches any run of characters, e.g. "session:*") the client may
	// subscribe to without the authorizer being asked again. They add to the
	// token's "channels" claim.
	Channels []string `json:"channels,omitempty"`
	// Reason, on a denial, says why (the core logs it; the client sees only
	// close code 1008 "Unauthorized" or a "forbidden" error).
	Reason string `json:"reason,omitempty"`
}

// AuthorizerFunc decides on connects and subscribes; see Server.SetAuthorizer.
type AuthorizerFunc func(ctx context.Context, req AuthRequest) AuthDecision

// authReg is one installation of an AuthorizerFunc on a Server. The core
// holds its cgo.Handle as user_data and hands it back to
// heraldGoAuthorizerDropped after its last call, which deletes the handle.
type authReg struct {
	srv *Server
	fn  AuthorizerFunc
}

// SetAuthorizer installs fn as the server's host authorizer, replacing any
// previous one; a nil fn removes it. Installing an authorizer puts the
// server in secure mode (see AuthConfig), even without a JWT key.
//
// The core asks fn on every connect (after verifying the token, if any: a
// valid JWT's subject is in req.TokenUserID), and on every subscribe to a
// channel that neither the client's token, the channels granted on connect
// nor AuthConfig.PublicChannels allow ("user:" channels of other users are
// refused without asking). A denied connect is closed with 1008
// "Unauthorized"; a denied subscribe gets a "forbidden" error.
//
// Each request runs fn in a goroutine of its own, so fn may block (query a
// database, call a service) without holding up the core, and several
// requests may run concurrently. The core's worker thread that delivers a
// request only starts that goroutine. ctx carries a deadline of
// AuthConfig.AuthorizerTimeoutMS (default DefaultAuthorizerTimeout) from the
// moment the request arrived, and is also cancelled when the server is
// closed. A request not answered by then is denied: an answer returned after
// ctx is done is logged and discarded, so fn should honour ctx. If fn
// panics, the panic is logged (Config.Logger) and the request is denied; a
// decision the core rejects (such as a UserID with control characters) is
// logged and denied too. Requests are never logged: they may hold tokens and
// cookies (Token, Headers, Raw).
//
// Requests the core issued before SetAuthorizer returns may still be
// answered by the previous function. After Close, fn is no longer called,
// but calls already running may still be running when Close returns (their
// ctx is cancelled and their answers are discarded).
//
// SetAuthorizer returns an error wrapping ErrClosed after Close.
func (s *Server) SetAuthorizer(fn AuthorizerFunc) error {
	const op = "set_authorizer"
	if s == nil {
		return closedError(op)
	}
	var h cgo.Handle
	if fn != nil {
		h = cgo.NewHandle(&authReg{srv: s, fn: fn})
		s.authHandles.Add(1)
	}
	handedOver := false
	err := s.call(op, func(ch *C.herald_server) Status {
		handedOver = true
		return Status(C.herald_go_set_authorizer(ch, C.uintptr_t(h)))
	})
	if !handedOver && h != 0 {
		// Refused before reaching the core (closed): the core never owned h.
		releaseAuthHandle(h)
	}
	return err
}

// releaseAuthHandle deletes h, which the core no longer uses.
func releaseAuthHandle(h cgo.Handle) {
	h.Value().(*authReg).srv.authHandles.Add(-1)
	h.Delete()
}

// authorize is called by the trampoline on the core's worker thread. It
// only copies the request and starts the goroutine that answers it.
func authorize(h cgo.Handle, id uint64, raw []byte) {
	// The core calls the drop callback, which deletes h, only after its last
	// call with h: h is valid here.
	r := h.Value().(*authReg)
	deadline := time.Now().Add(r.srv.authTimeout)
	go r.serve(id, raw, deadline)
}

// serve runs the user's function for one request and replies to the core.
func (r *authReg) serve(id uint64, raw []byte, deadline time.Time) {
	s := r.srv
	if s.closeCtx.Err() != nil {
		return // closed: the answer could not be delivered
	}
	ctx, cancel := context.WithDeadline(s.closeCtx, deadline)
	defer cancel()
	req, err := parseAuthRequest(raw)
	if err != nil {
		// The request is not logged: it may hold tokens and cookies.
		s.logger.Error("herald: cannot decode an authorization request; denying it",
			"id", id, "error", err)
		s.authDeny(id)
		return
	}
	d := r.call(ctx, req)
	switch {
	case s.closeCtx.Err() != nil:
		return // closed meanwhile
	case ctx.Err() != nil:
		// Too late: the core denies at its own timeout, which started a
		// moment before ctx's. Deny explicitly so that an answer after
		// ctx's deadline never counts, whichever timer fires first.
		s.logger.Warn("herald: the authorizer answered after its timeout; the request was denied",
			"id", id, "type", string(req.Type), "timeout", s.authTimeout)
		s.authDeny(id)
		return
	}
	s.replyAuth(id, d)
}

// authDeny denies request id, ignoring errors (the request may already have
// been denied by the core's timeout).
func (s *Server) authDeny(id uint64) {
	_ = s.authorizeReply(id, denyJSON)
}

// call runs fn, turning a panic into a logged denial.
func (r *authReg) call(ctx context.Context, req AuthRequest) (d AuthDecision) {
	defer func() {
		if p := recover(); p != nil {
			r.srv.logger.Error("herald: the authorizer panicked; denying the request",
				"id", req.ID, "type", string(req.Type), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			d = AuthDecision{Reason: "the authorizer panicked"}
		}
	}()
	return r.fn(ctx, req)
}

// denyJSON is sent when a decision cannot be delivered as it is.
var denyJSON = cString([]byte(`{"allow":false,"reason":"invalid decision from the authorizer"}`))

// replyAuth delivers d for request id. A decision the core rejects is
// replaced by a denial; the reasons are logged.
func (s *Server) replyAuth(id uint64, d AuthDecision) {
	js, err := json.Marshal(d)
	if err != nil { // cannot happen for this struct; deny anyway
		js = []byte(`{"allow":false}`)
	}
	js = cString(js)
	err = s.authorizeReply(id, js)
	if err == nil || errors.Is(err, ErrClosed) {
		return
	}
	// Either the core rejected the decision (the request then stays
	// pending), or the request is no longer pending (the core's timeout
	// fired just before ctx's deadline). Denying tells which.
	derr := s.authorizeReply(id, denyJSON)
	switch {
	case derr == nil:
		s.logger.Warn("herald: the core rejected the authorizer's decision; denied the request instead",
			"id", id, "decision", string(js[:len(js)-1]), "error", err)
	case errors.Is(derr, ErrClosed):
	case errors.Is(derr, ErrInvalidArgument):
		s.logger.Warn("herald: the authorizer answered after its timeout; the request was denied",
			"id", id, "timeout", s.authTimeout, "error", err)
	default:
		s.logger.Error("herald: cannot deliver the authorizer's decision", "id", id, "error", err)
	}
}

// authorizeReply calls herald_authorize_reply; js is NUL-terminated.
func (s *Server) authorizeReply(id uint64, js []byte) error {
	return s.call("authorize_reply", func(h *C.herald_server) Status {
		return Status(C.herald_authorize_reply(h, C.uint64_t(id), cptr(js)))
	}, js)
}

// wireAuthRequest is the core's JSON form of a request. JSON null leaves a
// string field empty.
type wireAuthRequest struct {
	Type        AuthRequestType   `json:"type"`
	ID          uint64            `json:"id"`
	Token       string            `json:"token"`
	TokenUserID string            `json:"tokenUserId"`
	Query       map[string]string `json:"query"`
	Headers     map[string]string `json:"headers"`
	Origin      string            `json:"origin"`
	RemoteAddr  string            `json:"remoteAddr"`
	ClientID    string            `json:"clientId"`
	UserID      string            `json:"userId"`
	Channel     string            `json:"channel"`
	Action      string            `json:"action"`
	TimeoutMs   uint64            `json:"timeoutMs"`
}

func parseAuthRequest(raw []byte) (AuthRequest, error) {
	var w wireAuthRequest
	if err := json.Unmarshal(raw, &w); err != nil {
		return AuthRequest{}, err
	}
	if w.Type == "" {
		return AuthRequest{}, errors.New("request has no type")
	}
	return AuthRequest{
		Type:        w.Type,
		ID:          w.ID,
		Token:       w.Token,
		TokenUserID: w.TokenUserID,
		Query:       w.Query,
		Headers:     w.Headers,
		Origin:      w.Origin,
		RemoteAddr:  w.RemoteAddr,
		ClientID:    w.ClientID,
		UserID:      w.UserID,
		Channel:     w.Channel,
		TimeoutMs:   w.TimeoutMs,
		Action:      w.Action,
		Raw:         json.RawMessage(raw),
	}, nil
}

// loggerOrDefault returns l, or slog.Default() when l is nil.
func loggerOrDefault(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
