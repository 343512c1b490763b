package lb

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The compact slice keeps what the desired state reads, with the API's
// defaults applied (an unset ready condition is ready, an unset protocol
// TCP), and leaves out what it cannot use.
func TestNewEndpointSlice(t *testing.T) {
	udp := corev1.ProtocolUDP
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-abc", ResourceVersion: "7",
			Labels:      map[string]string{discoveryv1.LabelServiceName: "web", "other": "x"},
			Annotations: map[string]string{"a": "b"}},
		AddressType: discoveryv1.AddressTypeIPv6,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr("http"), Port: ptr(int32(8080))},
			{Name: ptr("dns"), Port: ptr(int32(53)), Protocol: &udp},
			{Name: ptr("none")},
			{Name: ptr("big"), Port: ptr(int32(70000))},
		},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"2001:db8::1", "2001:db8::2"}, NodeName: ptr("n1"), Zone: ptr("z"),
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "p"}},
			{Addresses: []string{"2001:db8::3"}, NodeName: ptr("n1"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(false)}},
			{Addresses: []string{"2001:db8::4"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}},
			{Addresses: []string{"2001:db8::5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(false), Terminating: ptr(true)}},
			{Addresses: []string{"::ffff:10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}},
			{Addresses: nil},
			{Addresses: []string{"not-an-ip"}},
		},
	}
	got := NewEndpointSlice(s)
	want := &EndpointSlice{Namespace: "ns", Name: "web-abc", Service: "web", Family: 6,
		Ports: []EndpointPort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 8080}, {Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53}},
		Endpoints: []Endpoint{
			{Addr: netip.MustParseAddr("2001:db8::1"), Node: NodeOf("n1"), Ready: true},
			{Addr: netip.MustParseAddr("2001:db8::3"), Node: NodeOf("n1")},
			{Addr: netip.MustParseAddr("2001:db8::4"), Draining: true},
			{Addr: netip.MustParseAddr("2001:db8::5")},
			{Addr: netip.MustParseAddr("10.0.0.1"), Ready: true},
		}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("NewEndpointSlice:\n got %+v\nwant %+v", got, want)
	}
	if n := got.Endpoints[0].Node; n != got.Endpoints[1].Node || n.String() != "n1" || got.Endpoints[2].Node.String() != "" {
		t.Errorf("nodes %q %q %q, want n1 twice (one interned name), then none", n, got.Endpoints[1].Node, got.Endpoints[2].Node)
	}
	for _, c := range []struct {
		typ  discoveryv1.AddressType
		want uint8
	}{{discoveryv1.AddressTypeIPv4, 4}, {discoveryv1.AddressTypeIPv6, 6}, {discoveryv1.AddressTypeFQDN, 0}} {
		if got := NewEndpointSlice(&discoveryv1.EndpointSlice{AddressType: c.typ}); got.Family != c.want || got.Endpoints != nil {
			t.Errorf("%s: family %d, endpoints %v; want %d, none", c.typ, got.Family, got.Endpoints, c.want)
		}
	}
}
