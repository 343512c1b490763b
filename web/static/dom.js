// h builds an element: h('td', {class: 'owner'}, 'lb1'). Text is always set
// as text, never parsed as HTML. Props: class, dataset, on<event> handlers;
// anything else is an attribute (true sets an empty one, false/null none).
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

// fill replaces the children of el.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

export const $ = sel => document.querySelector(sel);
