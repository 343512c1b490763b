package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
)

// MemberSet is the configured cluster — the members that vote on the
// cluster configuration and may own VIPs — kept in the consensus log:
// POST /api/v1/members, DELETE /api/v1/members/{name}, the configured
// flag of GET /api/v1/members and the contact of GET /api/v1/config. Its
// methods are safe for concurrent use.
type MemberSet interface {
	// Configured lists the configured members' names, their gossip
	// addresses (ip:port), sorted.
	Configured() []string
	// Contact says whether this host is in contact with a majority of
	// the configured members.
	Contact() Contact
	// Add makes the member at addr (ip:port, or an IP address with this
	// host's cluster.bindPort) a configured member and returns its name
	// once a majority has committed the change. Errors: ErrInvalidMember
	// (400), ErrMemberExists (409), *RefusedError (409), ErrNotReplicated
	// (409), ErrNoQuorum and ErrUnconfirmed (503).
	Add(ctx context.Context, addr string, force bool) (MemberChange, error)
	// Remove removes the configured member name (its gossip address, or
	// its node name while it is live) and returns once a majority has
	// committed it. Errors: ErrNotFound (404), *RefusedError (409) and
	// Add's.
	Remove(ctx context.Context, name string, force bool) (MemberChange, error)
}

// Errors of MemberSet.
var (
	ErrInvalidMember = errors.New("not a member's gossip address")
	ErrMemberExists  = errors.New("a configured member already")
)

// RefusedError is a member change refused as it stands (409): it would
// leave the cluster without a reachable majority, or without members.
// Forceable says whether ?force=true overrides it.
type RefusedError struct {
	Reason    string
	Forceable bool
}

// noLog answers a member change on a host that keeps no consensus log.
const noLog = "this host keeps no consensus log (cluster.insecure, or a lone host without a state directory): its member set is its config file's cluster.join"

func (e *RefusedError) Error() string {
	if e.Forceable {
		return e.Reason + " (force=true makes the change anyway)"
	}
	return e.Reason
}

// Contact is whether a host is in contact with a majority of the
// configured cluster (GET /api/v1/config's contact).
type Contact struct {
	// Quorum: this host knows a leader and hears from it (or leads and
	// hears a majority): a write through it can be committed, and the
	// version it shows is at most one round behind.
	Quorum bool `json:"quorum"`
	// Leader is the consensus leader's name, "" when none is known.
	Leader string `json:"leader"`
	// Unreachable lists the configured members this host has not heard
	// from lately (a follower hears only the leader, and lists none
	// while it does).
	Unreachable []string `json:"unreachable"`
}

// MemberChange is the answer of POST and DELETE /api/v1/members.
type MemberChange struct {
	// Member is the name of the member added or removed.
	Member string `json:"member"`
	// Members are the configured members after the change.
	Members []string `json:"members"`
}

// AddMemberRequest is the body of POST /api/v1/members.
type AddMemberRequest struct {
	// Address is the new member's gossip address: its cluster.bindAddr
	// and bindPort (ip:port; the port defaults to this host's bindPort).
	Address string `json:"address"`
}

func (s *Server) memberRoutes(admin *gin.RouterGroup) {
	ms := s.opts.Members
	admin.POST("/members", func(c *gin.Context) {
		var req AddMemberRequest
		b, err := io.ReadAll(c.Request.Body)
		if err != nil {
			abort(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", MaxBodyBytes))
			return
		}
		if err := json.Unmarshal(b, &req); err != nil || req.Address == "" {
			s.audit(c, "member.add", 0)
			abort(c, http.StatusBadRequest, `the body must be {"address": "ip:port"}: the new member's gossip address (cluster.bindAddr:bindPort)`)
			return
		}
		s.audit(c, "member.add "+req.Address, 0)
		force, ok := forceParam(c)
		if !ok {
			return
		}
		if ms == nil {
			abort(c, http.StatusConflict, noLog)
			return
		}
		ctx, cancel := context.WithTimeout(c.Request.Context(), writeTimeout)
		defer cancel()
		res, err := ms.Add(ctx, req.Address, force)
		s.memberAnswer(c, http.StatusCreated, res, err)
	})
	admin.DELETE("/members/:name", func(c *gin.Context) {
		name := c.Param("name")
		s.audit(c, "member.remove "+name, 0)
		force, ok := forceParam(c)
		if !ok {
			return
		}
		if ms == nil {
			abort(c, http.StatusConflict, noLog)
			return
		}
		ctx, cancel := context.WithTimeout(c.Request.Context(), writeTimeout)
		defer cancel()
		res, err := ms.Remove(ctx, name, force)
		s.memberAnswer(c, http.StatusOK, res, err)
	})
}

func (s *Server) memberAnswer(c *gin.Context, ok int, res MemberChange, err error) {
	var refused *RefusedError
	switch {
	case unavailable(c, err):
	case errors.Is(err, ErrInvalidMember):
		abort(c, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrNotFound):
		abort(c, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrMemberExists), errors.Is(err, ErrNotReplicated), errors.As(err, &refused):
		abort(c, http.StatusConflict, err.Error())
	case err != nil:
		abort(c, http.StatusInternalServerError, err.Error())
	default:
		res.Members = nonNil(res.Members)
		c.JSON(ok, res)
	}
}

// forceParam reads ?force=true.
func forceParam(c *gin.Context) (bool, bool) { return boolParam(c, "force") }

// boolParam reads the query parameter name as a boolean, false when it
// is absent; a value that is not one answers 400.
func boolParam(c *gin.Context, name string) (bool, bool) {
	v, given := c.GetQuery(name)
	if !given {
		return false, true
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		abort(c, http.StatusBadRequest, fmt.Sprintf("%s=%q: want true or false", name, v))
		return false, false
	}
	return b, true
}

// members is GET /api/v1/members: the live members, each saying whether
// it is configured, and the configured ones that are not live (a host
// added and not started yet, or down).
func (s *Server) members(c *gin.Context) {
	out := nonNil(s.opts.State.Members())
	if s.opts.Members == nil {
		for i := range out {
			out[i].Configured = true
		}
		c.JSON(http.StatusOK, out)
		return
	}
	configured := map[string]bool{}
	for _, m := range s.opts.Members.Configured() {
		configured[m] = true
	}
	for i := range out {
		if configured[out[i].Address] {
			out[i].Configured = true
			delete(configured, out[i].Address)
		}
	}
	for _, m := range s.opts.Members.Configured() {
		if configured[m] {
			out = append(out, Member{Name: m, Address: m, Configured: true, VIPs: []string{}})
		}
	}
	c.JSON(http.StatusOK, out)
}
