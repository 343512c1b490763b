package bgp

import (
	"os"
	"testing"

	"github.com/edgelb/edgelb/test/nslab"
)

func TestMain(m *testing.M) { os.Exit(nslab.Main(m)) }
