// Package auth decides who may send results to the aggregator.
//
// Agents present a bearer token. In a cluster it is the agent's projected
// ServiceAccount token, minted for the aggregator's audience, and TokenReview
// asks the API server whether it is valid for that audience and whose it is;
// only the agent's ServiceAccount is admitted. Without Kubernetes (the demo,
// tests, a laptop) a static shared token stands in. Replicas authenticate to
// each other with a shared secret, through the same interface.
//
// The errors say which HTTP answer fits: ErrNoToken and ErrUnauthenticated
// are 401 (the token may be fixed or rotated, so agents retry), ErrForbidden
// is 403 (a valid identity that is not allowed), anything else is a failure
// to decide (the API server is unreachable) and is 503.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
)

var (
	// ErrNoToken: the request carries no bearer token.
	ErrNoToken = errors.New("no bearer token")
	// ErrUnauthenticated: the token is not valid (or not for this audience).
	ErrUnauthenticated = errors.New("token not valid")
	// ErrForbidden: the token is valid but its identity may not send results.
	ErrForbidden = errors.New("identity not allowed")
)

// Identity is who a token belongs to.
type Identity struct {
	Username string
	UID      string
}

// Authenticator checks a bearer token. It returns ErrUnauthenticated or
// ErrForbidden (possibly wrapped, with detail) for a definite no, and any
// other error when it could not decide.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Identity, error)
}

// BearerToken extracts the token of an "Authorization: Bearer" header, or
// returns ErrNoToken.
func BearerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", ErrNoToken
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", ErrNoToken
	}
	return tok, nil
}

// SharedToken admits the holders of any of a fixed set of tokens.
type SharedToken struct {
	name   string
	hashes [][sha256.Size]byte
}

// NewSharedToken admits requests bearing one of tokens (several allow a
// rotation without downtime), all reported as the identity name. Empty
// tokens are refused: they would admit everyone who sends "Bearer ".
func NewSharedToken(name string, tokens ...string) (*SharedToken, error) {
	st := &SharedToken{name: name}
	for _, t := range tokens {
		if t = strings.TrimSpace(t); t == "" {
			return nil, errors.New("auth: empty shared token")
		}
		st.hashes = append(st.hashes, sha256.Sum256([]byte(t)))
	}
	if len(st.hashes) == 0 {
		return nil, errors.New("auth: no shared token")
	}
	return st, nil
}

// Authenticate compares hashes in constant time, so neither the token's
// content nor its length leaks through timing.
func (st *SharedToken) Authenticate(_ context.Context, token string) (Identity, error) {
	h := sha256.Sum256([]byte(token))
	match := 0
	for i := range st.hashes {
		match |= subtle.ConstantTimeCompare(h[:], st.hashes[i][:])
	}
	if match == 0 {
		return Identity{}, ErrUnauthenticated
	}
	return Identity{Username: st.name}, nil
}
