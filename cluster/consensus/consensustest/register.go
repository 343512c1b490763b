package consensustest

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// The cluster configuration as a register with compare-and-set, for
// porcupine's linearizability check: a write names the version it was
// made from (If) and its content (B); a read returns the version and
// content it saw. An Unknown write (no answer, or 503) may have happened
// or not: give it a Return of math.MaxInt64.

// RegState is the register's state: the current version and content.
type RegState struct {
	V uint64
	B string
}

// RegInput is an operation: a read, or a write made from version If.
type RegInput struct {
	Write bool
	If    uint64
	B     string
}

// RegOutput is an operation's result: a write acknowledged (OK, as
// version V), refused as stale, or Unknown; a read's V and B.
type RegOutput struct {
	OK, Stale, Unknown bool
	V                  uint64
	B                  string
}

// RegisterModel is the register starting at init (version 1 with the
// seed's content, for a cluster already running).
func RegisterModel(init RegState) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return init },
		Step: func(state, input, output any) (bool, any) {
			st, in, out := state.(RegState), input.(RegInput), output.(RegOutput)
			if !in.Write {
				return out.V == st.V && out.B == st.B, st
			}
			match := st.V == in.If
			switch {
			case out.Unknown:
				// An unacknowledged write may have happened or not: the
				// checker may place it at the end (its return is at
				// infinity), where it changes nothing seen.
				if match {
					return true, RegState{V: in.If + 1, B: in.B}
				}
				return true, st
			case out.OK:
				return match && out.V == in.If+1, RegState{V: in.If + 1, B: in.B}
			default: // stale
				return !match, st
			}
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(RegInput), output.(RegOutput)
			if !in.Write {
				return fmt.Sprintf("read() -> %d %q", out.V, out.B)
			}
			return fmt.Sprintf("cas(%d, %q) -> %+v", in.If, in.B, out)
		},
	}
}
