package e2e

import (
	"os"
	"testing"

	"github.com/edgelb/edgelb/test/nslab"
)

// The lab's static VIPs, and how long a change may take to settle.
var vip4, vip6 = nslab.VIP4, nslab.VIP6

const converge = nslab.Converge

func TestMain(m *testing.M) { os.Exit(nslab.Main(m)) }
