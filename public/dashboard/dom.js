// Small DOM helpers. Every piece of data goes in as text (textContent), never as HTML.

export const $ = (id) => document.getElementById(id);

/** Says `text` in the page's header, or in `where` (a panel's own message line). */
export function say(text, isError = false, where = $('message')) {
  where.textContent = text;
  where.classList.toggle('error', isError);
}

export function cell(row, index) {
  while (row.cells.length <= index) row.insertCell();
  return row.cells[index];
}

export function setText(element, text) {
  const value = text === null || text === undefined ? '' : String(text);
  if (element.textContent !== value) element.textContent = value;
}

/** Keeps `tbody` rows in `keys` order, reusing rows by key so focus and selection survive. */
export function syncRows(tbody, keys, fill) {
  const existing = new Map([...tbody.rows].map((row) => [row.dataset.key, row]));
  keys.forEach((key, index) => {
    let row = existing.get(key);
    if (!row) {
      row = document.createElement('tr');
      row.dataset.key = key;
    }
    existing.delete(key);
    fill(row, key);
    if (tbody.rows[index] !== row) tbody.insertBefore(row, tbody.rows[index] ?? null);
  });
  for (const row of existing.values()) row.remove();
}
