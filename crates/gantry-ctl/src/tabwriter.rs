//! Columns aligned as Go's `text/tabwriter` aligns them, which kubectl prints through: cells end with a tab;
//! a column is as wide as its widest cell plus the padding (at least the minimum width), computed over each
//! block of consecutive lines that have that column; the last cell of a line is not padded.

/// Aligns `text` (lines of tab-terminated cells) with `min_width` and `padding`.
pub fn align(text: &str, min_width: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split_terminator('\n').map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|cells| vec![0; cells.len().saturating_sub(1)]).collect();
    format_block(&lines, &mut widths, 0, lines.len(), 0, min_width, padding);
    let mut out = String::new();
    for (cells, widths) in lines.iter().zip(&widths) {
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if let Some(&width) = widths.get(i) {
                let len = cell.chars().count();
                out.extend(std::iter::repeat_n(' ', width.saturating_sub(len)));
            }
        }
        out.push('\n');
    }
    out
}

fn format_block(
    lines: &[Vec<&str>],
    widths: &mut [Vec<usize>],
    start: usize,
    end: usize,
    column: usize,
    min_width: usize,
    padding: usize,
) {
    let has_column = |cells: &Vec<&str>| cells.len() > column + 1;
    let mut i = start;
    while i < end {
        if !has_column(&lines[i]) {
            i += 1;
            continue;
        }
        let block_start = i;
        let mut width = min_width;
        while i < end && has_column(&lines[i]) {
            width = width.max(lines[i][column].chars().count() + padding);
            i += 1;
        }
        for w in &mut widths[block_start..i] {
            w[column] = width;
        }
        format_block(lines, widths, block_start, i, column + 1, min_width, padding);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_take_the_widest_cell_plus_padding_and_the_last_cell_is_not_padded() {
        let text = "NAME\tREADY\tSTATUS\nweb-1\t1/1\tRunning\n";
        assert_eq!(align(text, 6, 3), "NAME    READY   STATUS\nweb-1   1/1     Running\n");
    }

    #[test]
    fn a_line_without_the_column_ends_the_block() {
        let text = "Name:\tx\nContainers:\n  long-name:\tv\n";
        assert_eq!(align(text, 0, 2), "Name:  x\nContainers:\n  long-name:  v\n");
    }
}
