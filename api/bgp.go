package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
)

// BGPStatus is GET /api/v1/bgp: this host's BGP speaker.
type BGPStatus struct {
	// Enabled is false without a bgp section; nothing else is set then.
	Enabled  bool   `json:"enabled"`
	ASN      uint32 `json:"asn,omitempty"`
	RouterID string `json:"routerID,omitempty"`
	// Serving: this member may serve (healthy, quorum, not draining or
	// stopping), so it advertises its bgp VIPs.
	Serving bool `json:"serving"`
	// Advertised are the routes advertised to the peers.
	Advertised []string `json:"advertised"`
	// Routes are the same routes with their path attributes.
	Routes []BGPRoute `json:"routes"`
	// GracefulShutdown: the member drains or stops, and its routes carry
	// GRACEFUL_SHUTDOWN (65535:0) until they are withdrawn.
	GracefulShutdown bool      `json:"gracefulShutdown"`
	Peers            []BGPPeer `json:"peers"`
}

// BGPRoute is one advertised route and its attributes.
type BGPRoute struct {
	Prefix string `json:"prefix"`
	// Communities are like "65000:100" or a well-known name
	// ("no-export", "graceful-shutdown").
	Communities      []string `json:"communities,omitempty"`
	LargeCommunities []string `json:"largeCommunities,omitempty"`
	// LocalPref is sent to iBGP peers only.
	LocalPref *uint32 `json:"localPref,omitempty"`
}

// BGPPeer is one BGP session.
type BGPPeer struct {
	Address string `json:"address"`
	ASN     uint32 `json:"asn"`
	// State is the BGP FSM state: idle, connect, active, opensent,
	// openconfirm or established.
	State       string `json:"state"`
	Established bool   `json:"established"`
	// Since is when the session came up; UptimeSeconds counts from it (0
	// when not established).
	Since         *time.Time `json:"since,omitempty"`
	UptimeSeconds float64    `json:"uptimeSeconds"`
	// BFD is the BFD session's state (down, init, up, admin-down); empty
	// when the peer has no BFD.
	BFD          string `json:"bfd,omitempty"`
	PrefixesSent int    `json:"prefixesSent"`
}

func (s *Server) bgp(c *gin.Context) {
	st := BGPStatus{Advertised: []string{}, Routes: []BGPRoute{}, Peers: []BGPPeer{}}
	if s.opts.BGP != nil {
		st = s.opts.BGP()
	}
	c.JSON(http.StatusOK, st)
}

var (
	descBGPUp      = prometheus.NewDesc("edgelb_bgp_session_up", "1 if the BGP session with the peer is established.", []string{"peer", "asn"}, nil)
	descBGPSent    = prometheus.NewDesc("edgelb_bgp_prefixes_advertised", "Prefixes advertised to the peer.", []string{"peer", "asn"}, nil)
	descBGPBFDUp   = prometheus.NewDesc("edgelb_bgp_bfd_up", "1 if the peer's BFD session is up (absent without BFD).", []string{"peer", "asn"}, nil)
	descBGPServing = prometheus.NewDesc("edgelb_bgp_serving", "1 if this host advertises its bgp VIPs (healthy, quorum, not draining).", nil, nil)
	descBGPRoutes  = prometheus.NewDesc("edgelb_bgp_routes_advertised", "Routes (bgp VIPs) this host advertises.", nil, nil)
	descBGPGshut   = prometheus.NewDesc("edgelb_bgp_graceful_shutdown", "1 while this host's routes carry GRACEFUL_SHUTDOWN (drain or stop) before their withdrawal.", nil, nil)
	bgpMetricDescs = []*prometheus.Desc{descBGPUp, descBGPSent, descBGPBFDUp, descBGPServing, descBGPRoutes, descBGPGshut}
)

// BGPCollector reports the BGP sessions at scrape time.
type BGPCollector func() BGPStatus

func (f BGPCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range bgpMetricDescs {
		ch <- d
	}
}

func (f BGPCollector) Collect(ch chan<- prometheus.Metric) {
	st := f()
	if !st.Enabled {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, p := range st.Peers {
		asn := formatASN(p.ASN)
		gauge(descBGPUp, b2f(p.Established), p.Address, asn)
		gauge(descBGPSent, float64(p.PrefixesSent), p.Address, asn)
		if p.BFD != "" {
			gauge(descBGPBFDUp, b2f(p.BFD == "up"), p.Address, asn)
		}
	}
	gauge(descBGPServing, b2f(st.Serving))
	gauge(descBGPRoutes, float64(len(st.Advertised)))
	gauge(descBGPGshut, b2f(st.GracefulShutdown))
}

func formatASN(a uint32) string { return strconv.FormatUint(uint64(a), 10) }
